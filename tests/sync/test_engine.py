"""The sync engine against the simulated stores over HTTPS, on real PostgreSQL: a first
sync imports every order; busy stores (THROTTLED, 429, 503) are waited out, up to a bound;
orders a webhook never brought arrive with the next sync and count as missed; an older
version never overwrites a newer one; an interrupted run resumes after its last page; one
run per store at a time; RLS keeps a run to its own seller's orders."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.crypto import decrypt
from astra.db.session import Database, Transaction, act_as
from astra.db.tables import OrderOrigin, SyncStatus
from astra.orders import writer
from astra.settings import Settings
from astra.stores.api import SHOPIFY_RECENT_ONLY
from astra.sync.engine import INTERRUPTED, RetryPolicy, run_sync
from astra.sync.state import NO_CREDENTIALS, SyncState
from astra.webhooks.platforms import PLATFORMS, parse_payload
from testkit.simulators.base import SimOrder, SimulatedStore
from testkit.simulators.server import StoreServer
from testkit.simulators.shopify import SimulatedShopify, rest_order
from testkit.simulators.woocommerce import SimulatedWooCommerce
from testkit.stores import Store, connect_store, deliver, encode, fetch, orders_of, signed_headers
from tests.conftest import Account, TestDatabase

ALL_ORDERS = ["read_orders", "read_all_orders"]
# Short waits, so that the tests that make stores busy take seconds.
FAST = RetryPolicy(give_up_after=timedelta(seconds=20), first_wait=0.1, max_wait=0.4)
Progress = Callable[[SyncState], Awaitable[None]]
# The seeded stores' orders last changed this long before the tests connect them: longer
# than the overlap between syncs, so a second sync lists only what changed after.
QUIET = timedelta(minutes=10)


@pytest.fixture
def settings(store_server: StoreServer, test_database: TestDatabase) -> Settings:
    return store_server.settings(test_database.settings)


def shopify(
    server: StoreServer, domain: str, count: int, scopes: list[str] = ALL_ORDERS
) -> tuple[SimulatedShopify, dict[str, str]]:
    shop = server.add(SimulatedShopify(domain, order_count=0))
    shop.seed(count, days=365, ago=QUIET)
    app = shop.install_app(scopes)
    return shop, {"client_id": app.client_id or "", "client_secret": app.client_secret}


def woocommerce(
    server: StoreServer, domain: str, count: int
) -> tuple[SimulatedWooCommerce, dict[str, str]]:
    woo = server.add(SimulatedWooCommerce(domain, order_count=0))
    woo.seed(count, days=365, ago=QUIET)
    key = woo.add_key("read")
    return woo, {"consumer_key": key.consumer_key, "consumer_secret": key.consumer_secret}


Connect = Callable[..., Awaitable[tuple[SimulatedStore, Store]]]
Sync = Callable[..., Awaitable[SyncState]]


@pytest.fixture
def connect(
    store_server: StoreServer, fresh_domain: Callable[[str], str], seller: Account
) -> Connect:
    """connect(platform, count): a simulated store of `count` orders placed over a year,
    connected by the seller with API credentials."""

    async def connected(platform: str, count: int, **kwargs: Any) -> tuple[SimulatedStore, Store]:
        if platform == "shopify":
            domain = fresh_domain("sync{}.myshopify.com")
            sim, credentials = shopify(store_server, domain, count, **kwargs)
        else:
            sim, credentials = woocommerce(store_server, fresh_domain("sync{}.example.com"), count)
        return sim, await connect_store(seller, platform, sim.domain, credentials)

    return connected


def listings(sim: SimulatedStore) -> list[dict[str, Any]]:
    """The order listings the store served, in order (not WooCommerce's one-order check)."""
    if isinstance(sim, SimulatedShopify):
        return sim.order_queries
    assert isinstance(sim, SimulatedWooCommerce)
    return [query for query in sim.order_queries if "orderby" in query]


@pytest.fixture
def sync(app: FastAPI, settings: Settings) -> Sync:
    """sync(store, ...): one run_sync of the store's integration, as the app's runtime role."""

    async def run(store: Store, **kwargs: Any) -> SyncState:
        database: Database = app.state.db
        retry = kwargs.pop("retry", FAST)
        return await run_sync(database, settings, store.id, retry=retry, **kwargs)

    return run


def on_page(*actions: Callable[[], object]) -> Progress:
    """A progress callback doing `actions[n]` after the n-th committed page."""
    pages = iter(actions)

    async def progress(_: SyncState) -> None:
        action = next(pages, None)
        if action is not None:
            result = action()
            if isinstance(result, Awaitable):
                await result

    return progress


async def order_rows(owner_engine: AsyncEngine, store: Store) -> dict[str, dict[str, Any]]:
    return {row["platform_order_id"]: row for row in await orders_of(owner_engine, store)}


async def sync_row(owner_engine: AsyncEngine, store: Store) -> dict[str, Any]:
    [row] = await fetch(owner_engine, "SELECT * FROM syncs WHERE integration_id = :id", id=store.id)
    return row


@pytest.mark.parametrize("platform", ["shopify", "woocommerce"])
async def test_the_first_sync_imports_exactly_every_order(
    connect: Connect, sync: Sync, owner_engine: AsyncEngine, platform: str
) -> None:
    sim, store = await connect(platform, 330)
    seen: list[SyncState] = []

    async def progress(state: SyncState) -> None:
        seen.append(state)

    done = await sync(store, progress=progress)

    assert done.state is SyncStatus.done
    assert done.imported == 330
    assert done.total == 330  # Shopify's ordersCount, WooCommerce's X-WP-Total
    assert (done.missed_by_webhook, done.error, done.note) == (0, None, None)
    assert done.finished_at is not None and done.finished_at == done.last_synced_at
    assert [state.imported for state in seen][-1] == 330
    assert [state.state for state in seen] == [SyncStatus.running] * (len(seen) - 1) + [
        SyncStatus.done
    ]
    rows = await order_rows(owner_engine, store)
    assert set(rows) == {str(order_id) for order_id in sim.orders}
    assert {row["origin"] for row in rows.values()} == {OrderOrigin.sync}
    # Each row holds what the store's webhook would have said of the order.
    for order in sim.orders.values():
        row = rows[str(order.id)]
        assert row["total"] == order.total
        assert row["source_updated_at"] == order.updated_at.replace(microsecond=0)
        assert row["placed_at"] == order.created_at.replace(microsecond=0)
    # The run's listing is gone from the state; the next run starts from its start.
    saved = await sync_row(owner_engine, store)
    assert (saved["cursor"], saved["run_id"], saved["synced_through"]) == (
        None,
        None,
        done.started_at,
    )


async def test_a_shopify_app_token_is_kept_for_the_next_sync(
    connect: Connect, sync: Sync, settings: Settings, owner_engine: AsyncEngine
) -> None:
    sim, store = await connect("shopify", 20)
    assert isinstance(sim, SimulatedShopify)
    await sync(store)
    [row] = await fetch(owner_engine, "SELECT * FROM integrations WHERE id = :id", id=store.id)
    token = decrypt(settings.encryption_key, row["access_token"])
    assert token in sim.tokens
    assert row["access_token_expires_at"] is not None

    again = await sync(store)
    assert again.state is SyncStatus.done
    assert sim.token_requests == 1


async def test_without_read_all_orders_the_state_says_only_60_days(
    connect: Connect, sync: Sync
) -> None:
    sim, store = await connect("shopify", 200, scopes=["read_orders"])
    horizon = sim.now() - timedelta(days=60)
    recent = [order for order in sim.orders.values() if order.created_at >= horizon]

    done = await sync(store)

    assert 0 < len(recent) < 200
    assert done.imported == len(recent)
    assert done.note == SHOPIFY_RECENT_ONLY


async def test_shopify_throttled_and_429_are_waited_out(connect: Connect, sync: Sync) -> None:
    sim, store = await connect("shopify", 330)
    assert isinstance(sim, SimulatedShopify)
    # Drained, the bucket takes 1.5 s to hold a page's cost again: the next page's request
    # comes sooner and is THROTTLED, however slowly this machine runs.
    sim.restore_rate = 200.0
    started = time.monotonic()

    done = await sync(
        store,
        progress=on_page(
            lambda: sim.drain_throttle(0.0),  # page 2 is THROTTLED
            lambda: sim.answer_busy(429, retry_after="1"),  # page 3 is a 429
        ),
    )

    assert done.state is SyncStatus.done
    assert done.imported == 330
    assert time.monotonic() - started >= 1.0  # the Retry-After was honoured
    # Four pages served, each once; page 2 was asked for twice.
    assert len(listings(sim)) == 4
    assert len({str(query.get("after")) for query in listings(sim)}) == 4
    assert sim.requests.count("AstraOrders") >= 5
    assert sim.busy_answers == []


async def test_woocommerce_429_and_503_are_waited_out(connect: Connect, sync: Sync) -> None:
    sim, store = await connect("woocommerce", 330)
    done = await sync(
        store,
        progress=on_page(
            lambda: sim.answer_busy(503, times=2),  # backed off, with jitter
            lambda: sim.answer_busy(429, retry_after="1"),
        ),
    )
    assert (done.state, done.imported, done.total) == (SyncStatus.done, 330, 330)
    assert sim.busy_answers == []


async def test_a_store_that_stays_away_fails_the_sync_in_bounded_time_and_the_next_resumes(
    connect: Connect, sync: Sync
) -> None:
    sim, store = await connect("woocommerce", 250)
    patience = RetryPolicy(give_up_after=timedelta(seconds=1.5), first_wait=0.2, max_wait=0.4)
    started = time.monotonic()

    failed = await sync(
        store,
        retry=patience,
        progress=on_page(lambda: sim.answer_busy(503, times=1000)),
    )

    assert time.monotonic() - started < 5
    assert failed.state is SyncStatus.failed
    assert failed.error is not None
    assert "HTTP 503" in failed.error
    assert "kept trying for 0.025 minutes" in failed.error
    assert failed.imported == 100  # the first page stays imported

    sim.busy_answers.clear()
    done = await sync(store)
    assert (done.state, done.imported, done.error) == (SyncStatus.done, 250, None)


async def test_credentials_the_store_refuses_fail_the_sync_at_once(
    connect: Connect, sync: Sync
) -> None:
    sim, store = await connect("woocommerce", 10)
    assert isinstance(sim, SimulatedWooCommerce)
    sim.keys.clear()  # the key was revoked at the store

    failed = await sync(store)

    assert failed.state is SyncStatus.failed
    assert failed.error is not None and "consumer key" in failed.error


async def test_without_credentials_the_sync_fails_saying_so(sync: Sync, seller: Account) -> None:
    store = await connect_store(seller, "woocommerce", "bare.example.com")
    failed = await sync(store)
    assert (failed.state, failed.error) == (SyncStatus.failed, NO_CREDENTIALS)


@pytest.mark.parametrize("platform", ["shopify", "woocommerce"])
async def test_orders_no_webhook_brought_arrive_with_the_next_sync_and_count_as_missed(
    connect: Connect,
    sync: Sync,
    anonymous: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    platform: str,
) -> None:
    sim, store = await connect(platform, 150)
    first = await sync(store)
    assert (first.imported, first.missed_by_webhook) == (150, 0)  # older than the connection

    sim.advance_clock(60)  # a minute later, at the store
    lost = [sim.add_order(), sim.add_order(), sim.add_order()]
    changed = next(iter(sim.orders.values()))
    sim.touch(changed)  # its orders/updated webhook was lost too
    delivered = sim.add_order()
    body = encode(_payload(sim, delivered))
    response = await deliver(anonymous, store, body, signed_headers(store, body))
    assert response.status_code == 200, response.text

    second = await sync(store)

    assert second.state is SyncStatus.done
    assert second.missed_by_webhook == 4
    assert second.imported == 5  # the five changes, the delivered one written again
    rows = await order_rows(owner_engine, store)
    assert len(rows) == 154
    assert {rows[str(order.id)]["origin"] for order in lost} == {OrderOrigin.sync}
    assert rows[str(delivered.id)]["origin"] == OrderOrigin.webhook
    # The sync listed the delivered version again, and kept the webhook's whole order.
    assert "line_items" in rows[str(delivered.id)]["raw"]
    assert rows[str(changed.id)]["source_updated_at"] == changed.updated_at.replace(microsecond=0)

    third = await sync(store)  # nothing new: nothing more missed
    assert third.missed_by_webhook == 4


def _payload(sim: SimulatedStore, order: SimOrder) -> dict[str, Any]:
    """The order as the store's webhook sends it."""
    if isinstance(sim, SimulatedShopify):
        return rest_order(order)
    assert isinstance(sim, SimulatedWooCommerce)
    return sim.rest_order(order)


async def test_an_older_version_never_overwrites_a_newer_one_and_deletes_stay(
    connect: Connect, sync: Sync, anonymous: httpx.AsyncClient, owner_engine: AsyncEngine
) -> None:
    sim, store = await connect("woocommerce", 250)
    assert isinstance(sim, SimulatedWooCommerce)
    by_change = sorted(sim.orders.values(), key=lambda order: (order.updated_at, order.id))
    newer, deleted = by_change[-1], by_change[-2]  # both on the last page

    async def webhooks_meanwhile() -> None:
        # After the first page, the store changes one order (its webhook arrives at once,
        # while the listing still shows the older version) and deletes another.
        update = dataclasses.replace(newer, updated_at=newer.updated_at + timedelta(hours=1))
        update.total = newer.total + 1
        body = encode(sim.rest_order(update))
        response = await deliver(
            anonymous, store, body, signed_headers(store, body, topic="order.updated")
        )
        assert response.json() == {"outcome": "stored"}
        body = encode({"id": deleted.id})
        response = await deliver(
            anonymous, store, body, signed_headers(store, body, topic="order.deleted")
        )
        assert response.json() == {"outcome": "deleted"}

    done = await sync(store, progress=on_page(webhooks_meanwhile))

    assert (done.state, done.imported, done.missed_by_webhook) == (SyncStatus.done, 250, 0)
    rows = await order_rows(owner_engine, store)
    assert rows[str(newer.id)]["total"] == newer.total + 1
    assert rows[str(newer.id)]["source_updated_at"] == (
        newer.updated_at + timedelta(hours=1)
    ).replace(microsecond=0)
    assert rows[str(deleted.id)]["deleted_at"] is not None
    assert sum(row["deleted_at"] is not None for row in rows.values()) == 1


def twin(
    server: StoreServer, sim: SimulatedStore, fresh_domain: Callable[[str], str]
) -> tuple[SimulatedStore, dict[str, str]]:
    """A second store holding the same orders, to list without interruptions."""
    if isinstance(sim, SimulatedShopify):
        other, credentials = shopify(server, fresh_domain("twin{}.myshopify.com"), 0)
    else:
        other, credentials = woocommerce(server, fresh_domain("twin{}.example.com"), 0)
    other.orders = {key: dataclasses.replace(order) for key, order in sim.orders.items()}
    return other, credentials


class Stop(Exception):
    pass


def stop() -> None:
    raise Stop


@pytest.mark.parametrize("platform", ["shopify", "woocommerce"])
async def test_an_interrupted_run_resumes_after_its_last_page(
    connect: Connect,
    sync: Sync,
    store_server: StoreServer,
    fresh_domain: Callable[[str], str],
    seller: Account,
    owner_engine: AsyncEngine,
    platform: str,
) -> None:
    sim, store = await connect(platform, 450)
    other, credentials = twin(store_server, sim, fresh_domain)
    whole = await connect_store(seller, platform, other.domain, credentials)
    await sync(whole)
    uninterrupted = listings(other)

    with pytest.raises(Stop):
        await sync(store, progress=on_page(lambda: None, stop))

    stopped = await sync_row(owner_engine, store)
    assert (stopped["state"], stopped["error"]) == ("failed", INTERRUPTED)
    assert len(listings(sim)) == 2
    assert stopped["imported"] == len(await order_rows(owner_engine, store)) >= 199

    done = await sync(store)

    assert (done.state, done.imported) == (SyncStatus.done, 450)
    # The second run went on from page 3: between them, the two runs asked the store for
    # exactly the pages one run does, each once.
    assert listings(sim) == uninterrupted
    rows = await order_rows(owner_engine, store)
    assert set(rows) == {str(order_id) for order_id in sim.orders}


async def test_a_cancelled_run_resumes_after_its_last_page(
    connect: Connect, sync: Sync, owner_engine: AsyncEngine
) -> None:
    sim, store = await connect("woocommerce", 450)
    paused = asyncio.Event()

    async def hang() -> None:
        paused.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(sync(store, progress=on_page(lambda: None, lambda: None, hang)))
    await paused.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stopped = await sync_row(owner_engine, store)
    assert (stopped["state"], stopped["error"]) == ("failed", INTERRUPTED)
    assert stopped["imported"] == len(await order_rows(owner_engine, store)) >= 298
    assert len(listings(sim)) == 3

    done = await sync(store)
    assert (done.state, done.imported) == (SyncStatus.done, 450)
    # It went on from the fourth page: no page was asked for twice.
    queries = [tuple(sorted(query.items())) for query in listings(sim)]
    assert len(queries) > 4
    assert len(set(queries)) == len(queries)
    assert len(await order_rows(owner_engine, store)) == 450


async def test_one_sync_per_store_at_a_time(connect: Connect, sync: Sync) -> None:
    sim, store = await connect("woocommerce", 250)
    first_page = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        first_page.set()
        await release.wait()

    running = asyncio.create_task(sync(store, progress=on_page(hold)))
    await first_page.wait()
    second = await sync(store)
    release.set()
    first = await running

    assert (second.state, second.imported) == (SyncStatus.running, 100)
    assert (first.state, first.imported) == (SyncStatus.done, 250)
    assert len(listings(sim)) == 3  # only the first run listed


async def test_rls_keeps_a_run_to_its_own_sellers_orders(
    app: FastAPI, seller: Account, other_seller: Account, owner_engine: AsyncEngine
) -> None:
    """The write the engine makes for a page, acting as one seller, into another's store:
    PostgreSQL refuses it, whatever the code asked."""
    mine = await connect_store(seller, "woocommerce", "mine.example.com")
    theirs = await connect_store(other_seller, "woocommerce", "theirs.example.com")
    version = PLATFORMS["woocommerce"].order_version(
        parse_payload(json.dumps({"id": 1, "date_modified_gmt": "2026-01-01T00:00:00"}).encode())
    )
    database: Database = app.state.db
    for integration_id, user_id in ((theirs.id, other_seller.id), (theirs.id, seller.id)):
        db = Transaction(database)
        await act_as(db, seller.id)
        with pytest.raises(DBAPIError):
            await db.execute(
                writer.store_versions(origin=OrderOrigin.sync),
                {"integration_id": integration_id, "user_id": user_id, "platform": "woocommerce"}
                | writer.batch_parameters([version]),
            )
        await db.end(commit=False)
    assert await orders_of(owner_engine, theirs) == []
    # The same write into the seller's own store goes through.
    db = Transaction(database)
    await act_as(db, seller.id)
    written = await db.execute(
        writer.store_versions(origin=OrderOrigin.sync),
        {"integration_id": mine.id, "user_id": seller.id, "platform": "woocommerce"}
        | writer.batch_parameters([version]),
    )
    assert [tuple(row) for row in written] == [("1", version.source_updated_at)]
    await db.end(commit=True)
    [row] = await fetch(
        owner_engine, "SELECT user_id FROM orders WHERE integration_id = :id", id=mine.id
    )
    assert row["user_id"] == seller.id


async def test_the_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    policy = RetryPolicy(first_wait=1.0, max_wait=8.0)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        waits = {policy.backoff(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(waits) > 1
