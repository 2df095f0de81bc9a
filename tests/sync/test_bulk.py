"""Shopify's bulk operations in the sync, against the simulated store over HTTPS (its JSONL
on the simulated cloud storage host, another name, resolved here to 127.0.0.1) on real
PostgreSQL: above `sync_bulk_threshold` a listing is one bulk query, at or below it pages;
a run stopped while Shopify works or mid-download resumes the same operation and takes in
each order once; failed, cancelled and expired operations and links fail the run saying so
and the next one starts anew; too many running operations are waited for, then reported."""

from __future__ import annotations

import asyncio
import ipaddress
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.session import Database
from astra.db.tables import OrderOrigin, SyncStatus
from astra.settings import Settings
from astra.stores.api import SHOPIFY_RECENT_ONLY, ShopifyAppCredentials, StoreApi
from astra.stores.net import IPAddress
from astra.stores.problems import StoreProblem
from astra.sync.engine import BULK_CURSOR, INTERRUPTED, RetryPolicy, run_sync
from astra.sync.state import SyncState
from testkit.processes import start
from testkit.simulators.server import StoreServer
from testkit.simulators.shopify import SimulatedShopify, line_items
from testkit.simulators.storage import HOST as STORAGE_HOST
from testkit.stores import Store, connect_store, fetch
from tests.conftest import Account, TestDatabase
from tests.sync.test_engine import (
    ALL_ORDERS,
    Stop,
    on_page,
    order_rows,
    shopify,
    stop,
    sync_row,
)
from tests.sync.test_workers import environment, eventually

FAST = RetryPolicy(
    give_up_after=timedelta(seconds=20), first_wait=0.1, max_wait=0.4, first_poll=0.1, max_poll=0.3
)
THRESHOLD = 100


async def storage_at_loopback(host: str, port: int) -> Sequence[str]:
    """The cloud storage host, where this test's store server listens; nothing else."""
    assert host == STORAGE_HOST, host
    return ["127.0.0.1"]


def loopback_only(address: IPAddress) -> bool:
    return address == ipaddress.ip_address("127.0.0.1")


@pytest.fixture
def settings(store_server: StoreServer, test_database: TestDatabase) -> Settings:
    return store_server.settings(test_database.settings, sync_bulk_threshold=THRESHOLD)


Sync = Callable[..., Any]


@pytest.fixture
def sync(app: FastAPI, settings: Settings) -> Sync:
    async def run(store: Store, **kwargs: Any) -> SyncState:
        database: Database = app.state.db
        return await run_sync(
            database,
            kwargs.pop("settings", settings),
            store.id,
            retry=kwargs.pop("retry", FAST),
            resolver=storage_at_loopback,
            address_allowed=loopback_only,
            **kwargs,
        )

    return run


@pytest.fixture
def connect(
    store_server: StoreServer, fresh_domain: Callable[[str], str], seller: Account
) -> Callable[..., Any]:
    async def connected(
        count: int, scopes: list[str] = ALL_ORDERS
    ) -> tuple[SimulatedShopify, Store, dict[str, str]]:
        shop, credentials = shopify(
            store_server, fresh_domain("bulk{}.myshopify.com"), count, scopes
        )
        shop.bulk_seconds = 0.6
        return shop, await connect_store(seller, "shopify", shop.domain, credentials), credentials

    return connected


def downloads(server: StoreServer, shop: SimulatedShopify) -> list[int]:
    """The statuses of the downloads of the shop's bulk results."""
    paths = {op.path for op in shop.bulk_operations.values()}
    return [status for path, status in server.storage.downloads if path in paths]


async def test_above_the_threshold_one_bulk_operation_imports_exactly_every_order(
    connect: Callable[..., Any],
    sync: Sync,
    store_server: StoreServer,
    owner_engine: AsyncEngine,
) -> None:
    shop, store, _ = await connect(330)
    seen: list[SyncState] = []

    async def progress(state: SyncState) -> None:
        seen.append(state)

    done = await sync(store, progress=progress)

    assert (done.state, done.error, done.note) == (SyncStatus.done, None, None)
    assert (done.imported, done.total, done.missed_by_webhook) == (330, 330, 0)
    # The path taken, from the store's own log: counted, one bulk query polled, no pages.
    assert shop.requests[:2] == ["AstraCheck", "AstraOrdersCount"]
    assert shop.requests.count("AstraBulkOrders") == 1
    assert "AstraBulkOperation" in shop.requests
    assert "AstraOrders" not in shop.requests
    assert downloads(store_server, shop) == [200]
    [operation] = shop.bulk_operations.values()
    assert operation.group
    # The progress: the operation started (nothing in yet, of 330), then the file's orders.
    assert (seen[0].state, seen[0].imported, seen[0].total) == (SyncStatus.running, 0, 330)
    assert seen[-1] == done
    rows = await order_rows(owner_engine, store)
    assert set(rows) == {str(order_id) for order_id in shop.orders}
    assert {row["origin"] for row in rows.values()} == {OrderOrigin.sync}
    for order in shop.orders.values():
        row = rows[str(order.id)]
        assert row["total"] == order.total
        assert row["source_updated_at"] == order.updated_at.replace(microsecond=0)
        # The line items came as lines of their own (__parentId) and are back in the order,
        # as the webhook has them.
        raw = row["raw"]
        assert raw["line_items"] == [
            {key: item[key] for key in ("id", "name", "quantity", "sku", "price")}
            for item in line_items(order)
        ]
    assert sum(len(row["raw"]["line_items"]) for row in rows.values()) > 330
    saved = await sync_row(owner_engine, store)
    assert (saved["cursor"], saved["run_id"]) == (None, None)


async def test_at_or_below_the_threshold_the_listing_pages(
    connect: Callable[..., Any], sync: Sync, store_server: StoreServer
) -> None:
    shop, store, _ = await connect(THRESHOLD)

    done = await sync(store)

    assert (done.state, done.imported, done.total) == (SyncStatus.done, THRESHOLD, THRESHOLD)
    assert "AstraOrdersCount" in shop.requests
    assert shop.requests.count("AstraOrders") == 1
    assert "AstraBulkOrders" not in shop.requests
    assert shop.bulk_operations == {}


async def test_a_later_sync_of_a_few_changes_pages(connect: Callable[..., Any], sync: Sync) -> None:
    shop, store, _ = await connect(330)
    await sync(store)
    shop.advance_clock(60)
    added = [shop.add_order() for _ in range(3)]

    second = await sync(store)

    assert (second.state, second.imported, second.missed_by_webhook) == (SyncStatus.done, 3, 3)
    assert shop.requests.count("AstraBulkOrders") == 1  # the first sync's only
    assert shop.requests.count("AstraOrders") == 1
    assert {order.id for order in added} <= set(shop.orders)


async def killed(owner_engine: AsyncEngine, store: Store) -> None:
    """Make the stopped run's row what a killed worker leaves: running, under a claim
    nobody beats any more (older than the lease)."""
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE syncs SET state = 'running', error = NULL, finished_at = NULL, "
                "run_id = gen_random_uuid(), heartbeat_at = now() - interval '3 minutes' "
                "WHERE integration_id = :id"
            ),
            {"id": store.id},
        )


async def test_a_run_killed_while_shopify_works_resumes_the_same_operation(
    connect: Callable[..., Any], sync: Sync, owner_engine: AsyncEngine
) -> None:
    shop, store, _ = await connect(330)
    shop.bulk_seconds = 2.0

    with pytest.raises(Stop):
        await sync(store, progress=on_page(stop))  # right after the operation started

    stopped = await sync_row(owner_engine, store)
    assert stopped["error"] == INTERRUPTED
    [operation] = shop.bulk_operations.values()
    assert stopped["cursor"].startswith(BULK_CURSOR)
    assert operation.gid in stopped["cursor"]
    await killed(owner_engine, store)

    done = await sync(store)

    assert (done.state, done.imported, done.total) == (SyncStatus.done, 330, 330)
    assert shop.requests.count("AstraBulkOrders") == 1  # polled again, not started again
    assert len(await order_rows(owner_engine, store)) == 330


async def test_a_run_killed_mid_download_resumes_after_its_last_batch(
    connect: Callable[..., Any],
    sync: Sync,
    store_server: StoreServer,
    owner_engine: AsyncEngine,
) -> None:
    shop, store, _ = await connect(2500)
    # Started, then the first batch of 1,000 committed: stopped there.
    with pytest.raises(Stop):
        await sync(store, progress=on_page(lambda: None, stop))

    stopped = await sync_row(owner_engine, store)
    assert stopped["imported"] == 1000 == len(await order_rows(owner_engine, store))
    assert orjson.loads(stopped["cursor"].removeprefix(BULK_CURSOR))["done"] == 1000
    await killed(owner_engine, store)

    done = await sync(store)

    assert (done.state, done.imported, done.total) == (SyncStatus.done, 2500, 2500)
    assert shop.requests.count("AstraBulkOrders") == 1
    assert downloads(store_server, shop) == [200, 200]
    rows = await order_rows(owner_engine, store)
    assert set(rows) == {str(order_id) for order_id in shop.orders}
    # Each order once, each counted once.
    [count] = await fetch(
        owner_engine, "SELECT count(*) AS n FROM orders WHERE integration_id = :id", id=store.id
    )
    assert count["n"] == 2500


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("INTERNAL_SERVER_ERROR", "failed inside Shopify. The next sync starts a new one."),
        ("TIMEOUT", "took longer than Shopify allows. The next sync starts a new one."),
        ("ACCESS_DENIED", "Give it the read_orders scope"),
    ],
)
async def test_a_failed_operation_fails_the_sync_and_the_next_starts_a_new_one(
    connect: Callable[..., Any], sync: Sync, owner_engine: AsyncEngine, code: str, says: str
) -> None:
    shop, store, _ = await connect(330)
    shop.bulk_fail = code

    failed = await sync(store)

    assert failed.state is SyncStatus.failed
    assert failed.error is not None
    assert says in failed.error
    assert (await sync_row(owner_engine, store))["cursor"] is None
    assert await order_rows(owner_engine, store) == {}

    shop.bulk_fail = None
    done = await sync(store)
    assert (done.state, done.imported, done.error) == (SyncStatus.done, 330, None)
    assert shop.requests.count("AstraBulkOrders") == 2


async def test_a_cancelled_operation_fails_the_sync(
    connect: Callable[..., Any], sync: Sync, settings: Settings, owner_engine: AsyncEngine
) -> None:
    shop, store, credentials = await connect(330)
    shop.bulk_seconds = 3.0

    async def cancel_it() -> None:
        # Someone with the app's credentials cancels the export while it runs.
        async with StoreApi(settings, shop.domain, ShopifyAppCredentials(**credentials)) as api:
            [operation] = shop.bulk_operations.values()
            await api._shopify(
                lambda admin: admin.query(
                    "mutation C($id: ID!) { bulkOperationCancel(id: $id) { userErrors "
                    "{ message } } }",
                    {"id": operation.gid},
                )
            )

    failed = await sync(store, progress=on_page(cancel_it))

    assert failed.state is SyncStatus.failed
    assert failed.error is not None and "was cancelled" in failed.error
    assert (await sync_row(owner_engine, store))["cursor"] is None


async def test_an_expired_link_fails_the_sync_and_the_next_starts_a_new_operation(
    connect: Callable[..., Any],
    sync: Sync,
    store_server: StoreServer,
    owner_engine: AsyncEngine,
) -> None:
    shop, store, _ = await connect(330)
    shop.link_lifetime = timedelta(0)  # expired by the time it is downloaded

    failed = await sync(store)

    assert failed.state is SyncStatus.failed
    assert failed.error is not None
    assert "expired before Astra downloaded it" in failed.error
    assert downloads(store_server, shop) == [400]  # GCS's ExpiredToken
    assert (await sync_row(owner_engine, store))["cursor"] is None

    shop.link_lifetime = timedelta(days=7)
    done = await sync(store)
    assert (done.state, done.imported) == (SyncStatus.done, 330)


async def test_an_operation_that_expired_before_a_resumed_run_read_it_is_started_again(
    connect: Callable[..., Any], sync: Sync, owner_engine: AsyncEngine
) -> None:
    shop, store, _ = await connect(330)
    with pytest.raises(Stop):
        await sync(store, progress=on_page(stop))
    await killed(owner_engine, store)
    shop.advance_clock(1)  # it completes...
    [first] = shop.bulk_operations.values()
    assert shop.refresh(first).status == "COMPLETED"
    shop.advance_clock(8 * 24 * 3600)  # ...and its result is gone 7 days later

    done = await sync(store)

    assert shop.refresh(first).status == "EXPIRED"
    assert (done.state, done.imported, done.error) == (SyncStatus.done, 330, None)
    assert shop.requests.count("AstraBulkOrders") == 2


async def test_too_many_running_operations_are_waited_for_then_reported(
    connect: Callable[..., Any], sync: Sync, settings: Settings
) -> None:
    shop, store, credentials = await connect(330)
    shop.bulk_seconds = 60.0
    # Five of the app's own operations run already (another tool with its credentials).
    async with StoreApi(settings, shop.domain, ShopifyAppCredentials(**credentials)) as api:
        for _ in range(5):
            await api.start_bulk_orders()
        with pytest.raises(StoreProblem) as refused:
            await api.start_bulk_orders()
    assert refused.value.transient
    patience = RetryPolicy(give_up_after=timedelta(seconds=1.0), first_wait=0.2, max_wait=0.3)
    started = time.monotonic()

    failed = await sync(store, retry=patience)

    assert time.monotonic() - started < 5
    assert failed.state is SyncStatus.failed
    assert failed.error is not None
    assert "as many bulk exports" in failed.error and "kept trying" in failed.error
    assert shop.requests.count("AstraBulkOrders") >= 8  # 6 above, then the run's tries


async def test_without_read_all_orders_a_bulk_sync_has_60_days_and_says_so(
    connect: Callable[..., Any], sync: Sync
) -> None:
    shop, store, _ = await connect(600, scopes=["read_orders"])
    horizon = shop.now() - timedelta(days=60)
    recent = [order for order in shop.orders.values() if order.created_at >= horizon]
    assert THRESHOLD < len(recent) < 600

    done = await sync(store)

    assert (done.state, done.imported, done.note) == (
        SyncStatus.done,
        len(recent),
        SHOPIFY_RECENT_ONLY,
    )
    assert shop.requests.count("AstraBulkOrders") == 1


async def test_the_result_of_an_ungrouped_query_is_not_taken_in(
    connect: Callable[..., Any], settings: Settings
) -> None:
    """Without groupObjects, Shopify scatters an order's line items among later orders'
    lines; the reader refuses such a file rather than attach items to the wrong order."""
    shop, _, credentials = await connect(30)
    async with StoreApi(
        settings,
        shop.domain,
        ShopifyAppCredentials(**credentials),
        resolver=storage_at_loopback,
        address_allowed=loopback_only,
    ) as api:
        query = (
            "{ orders { edges { node { id legacyResourceId lineItems { edges { node { id } } }"
            " } } } }"
        )
        data = await api._shopify(
            lambda admin: admin.query(
                "mutation R($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation "
                "{ id } userErrors { message } } }",
                {"q": query},
            )
        )
        gid = data["bulkOperationRunQuery"]["bulkOperation"]["id"]
        shop.advance_clock(1)
        operation = await api.bulk_operation(gid)
        assert operation.status == "COMPLETED" and operation.url is not None
        with pytest.raises(StoreProblem, match="doesn't understand"):
            async for _ in api.bulk_orders(operation.url):
                pass


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("{ shop { name } }", "at least one connection"),
        (
            "{ orders { edges { node { legacyResourceId lineItems { edges { node { id } } } } } } }",
            "must select the 'id' field",
        ),
        ("{ orders { edges { node { nope } } } }", "Invalid bulk query"),
    ],
)
async def test_the_simulated_store_refuses_bulk_queries_shopify_refuses(
    connect: Callable[..., Any], settings: Settings, query: str, says: str
) -> None:
    shop, _, credentials = await connect(3)
    async with StoreApi(settings, shop.domain, ShopifyAppCredentials(**credentials)) as api:
        data = await api._shopify(
            lambda admin: admin.query(
                "mutation R($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: true)"
                " { bulkOperation { id } userErrors { field message code } } }",
                {"q": query},
            )
        )
    payload = data["bulkOperationRunQuery"]
    assert payload["bulkOperation"] is None
    [error] = payload["userErrors"]
    assert error["code"] == "INVALID" and says in error["message"]
    assert shop.bulk_operations == {}


async def test_a_sync_process_killed_mid_download_is_finished_by_the_next(
    connect: Callable[..., Any],
    store_server: StoreServer,
    test_database: TestDatabase,
    owner_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    """SIGKILL: nothing recorded, the row left running under a claim nobody beats; once
    its lease is over (set back here instead of waited for), the next process polls the
    same operation, skips the 1,000 orders committed and takes in the rest once."""
    shop, store, _ = await connect(2500)
    env = environment(
        test_database,
        ASTRA_STORE_API_URL=store_server.url_template,
        ASTRA_STORE_CA_BUNDLE=str(store_server.ca_file),
        ASTRA_SYNC_BULK_THRESHOLD=str(THRESHOLD),
    )
    command = [sys.executable, "-m", "testkit.sync_process", str(store.id)]
    first_log = tmp_path / "first.log"
    first = start([*command, "--hold-after-orders", "1000"], env, first_log)
    try:

        async def first_batch_in() -> bool:
            row = await fetch(
                owner_engine, "SELECT imported FROM syncs WHERE integration_id = :id", id=store.id
            )
            return bool(row) and row[0]["imported"] >= 1000

        await eventually(first_batch_in, within=60)
        first.kill()
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    left = await sync_row(owner_engine, store)
    assert (left["state"], left["imported"], left["error"]) == ("running", 1000, None)
    assert left["cursor"].startswith(BULK_CURSOR)
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE syncs SET heartbeat_at = now() - interval '3 minutes' "
                "WHERE integration_id = :id"
            ),
            {"id": store.id},
        )

    second_log = tmp_path / "second.log"
    second = start(command, env, second_log)
    code = await asyncio.get_running_loop().run_in_executor(None, second.wait, 60)

    assert code == 0, second_log.read_text()
    done = await sync_row(owner_engine, store)
    assert (done["state"], done["imported"], done["total"]) == ("done", 2500, 2500)
    assert shop.requests.count("AstraBulkOrders") == 1
    assert downloads(store_server, shop) == [200, 200]
    rows = await order_rows(owner_engine, store)
    assert set(rows) == {str(order_id) for order_id in shop.orders}


async def test_a_dropped_download_is_picked_up_after_the_last_batch(
    connect: Callable[..., Any],
    sync: Sync,
    store_server: StoreServer,
    owner_engine: AsyncEngine,
) -> None:
    shop, store, _ = await connect(2500)
    store_server.storage.drop_next_after = 700 * 1024  # within the third batch's lines

    done = await sync(store)

    assert (done.state, done.imported, done.error) == (SyncStatus.done, 2500, None)
    assert downloads(store_server, shop) == [200, 200]
    assert shop.requests.count("AstraBulkOrders") == 1
    assert len(await order_rows(owner_engine, store)) == 2500


async def test_a_throttled_download_is_waited_for_not_taken_for_an_expired_link(
    connect: Callable[..., Any],
    sync: Sync,
    store_server: StoreServer,
    owner_engine: AsyncEngine,
) -> None:
    """A 429 from the storage host is its request rate, not the link: the download is
    asked again after the Retry-After, and the operation is kept (not started anew)."""
    shop, store, _ = await connect(1500)
    store_server.storage.throttle_next = 2

    done = await sync(store)

    assert (done.state, done.imported, done.error) == (SyncStatus.done, 1500, None)
    assert downloads(store_server, shop) == [429, 429, 200]
    assert shop.requests.count("AstraBulkOrders") == 1
    assert len(await order_rows(owner_engine, store)) == 1500


async def test_a_bulk_query_needs_the_scopes_its_query_needs(
    store_server: StoreServer, fresh_domain: Callable[[str], str], settings: Settings
) -> None:
    """As at Shopify: the mutation is accepted, the operation then fails ACCESS_DENIED; the
    count, a plain query, is an ACCESS_DENIED error at once."""
    shop, credentials = shopify(store_server, fresh_domain("noscope{}.myshopify.com"), 20, [])
    shop.bulk_seconds = 0.1
    async with StoreApi(settings, shop.domain, ShopifyAppCredentials(**credentials)) as api:
        with pytest.raises(StoreProblem) as counted:
            await api.order_count()
        started = await api.start_bulk_orders()
        shop.advance_clock(1)
        [operation] = shop.bulk_operations.values()
        assert operation.work is not None
        await operation.work
        ended = await api.bulk_operation(started.id)
        problem = api.bulk_failure(ended)
    assert counted.value.problem == "missing_scope"
    assert (ended.status, ended.error_code, ended.url) == ("FAILED", "ACCESS_DENIED", None)
    assert problem.problem == "missing_scope"


async def test_a_result_link_that_is_not_https_is_never_downloaded(
    connect: Callable[..., Any], sync: Sync, store_server: StoreServer
) -> None:
    shop, store, _ = await connect(330)
    shop.download_scheme = "http"

    failed = await sync(store)

    assert failed.state is SyncStatus.failed
    assert failed.error is not None and "isn't an HTTPS address" in failed.error
    assert downloads(store_server, shop) == []


async def test_an_order_whose_text_holds_the_parent_key_is_still_an_order(
    connect: Callable[..., Any], settings: Settings
) -> None:
    """Whether a line is an order or one of its line items is read from the line's JSON,
    not guessed from its bytes: a buyer's email (or an order name the shop chose) may hold
    the text `"__parentId`, and its order is still an order, skipped or read in its turn."""
    shop, _, credentials = await connect(30)
    tricky = sorted(shop.orders.values(), key=lambda order: order.updated_at)[9]
    tricky.email = 'buyer"__parentId'
    async with StoreApi(
        settings,
        shop.domain,
        ShopifyAppCredentials(**credentials),
        resolver=storage_at_loopback,
        address_allowed=loopback_only,
    ) as api:
        started = await api.start_bulk_orders()
        shop.advance_clock(1)
        operation = await api.bulk_operation(started.id)
        for _ in range(50):
            if operation.status == "COMPLETED":
                break
            await asyncio.sleep(0.1)
            operation = await api.bulk_operation(started.id)
        assert operation.status == "COMPLETED" and operation.url is not None
        everything = [order async for order in api.bulk_orders(operation.url)]
        assert sorted(order["id"] for order in everything) == sorted(shop.orders)
        assert {order["email"] for order in everything if order["id"] == tricky.id} == {
            tricky.email
        }
        for skip in (5, 10, 25):
            rest = [order["id"] async for order in api.bulk_orders(operation.url, skip=skip)]
            assert rest == [order["id"] for order in everything[skip:]]
