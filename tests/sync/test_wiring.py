"""The sync on the job queue, end to end: asking for one queues a job a worker runs; the
first working credentials queue the first sync; reconciliation queues one per active
integration with credentials; `astra sync ID` runs one in the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.sync.queue import RECONCILE, SYNC_STORE, WEBHOOK_HEALTH
from astra.sync.worker import worker_options
from testkit.simulators.base import SimulatedStore
from testkit.simulators.server import StoreServer
from testkit.simulators.woocommerce import SimulatedWooCommerce
from testkit.stores import Store, connect_store, orders_of
from tests.conftest import Account, TestDatabase, running
from tests.sync.test_engine import shopify, woocommerce

BASE = "/api/integrations"


@pytest.fixture(scope="module")
async def app(test_database: TestDatabase, store_server: StoreServer) -> AsyncIterator[FastAPI]:
    """The app (and its job queue) calling the simulated stores."""
    async with running(store_server.settings(test_database.settings)) as application:
        yield application


async def connected(
    account: Account,
    server: StoreServer,
    fresh_domain: Callable[[str], str],
    platform: str,
    count: int,
) -> tuple[SimulatedStore, Store]:
    """A simulated store of `count` orders over a year, connected by `account` with API
    credentials."""
    if platform == "shopify":
        sim, credentials = shopify(server, fresh_domain("wired{}.myshopify.com"), count)
    else:
        sim, credentials = woocommerce(server, fresh_domain("wired{}.example.com"), count)
    return sim, await connect_store(account, platform, sim.domain, credentials)


async def work(app: FastAPI) -> None:
    """One worker's pass over the queue: every job that can start runs, then it stops."""
    options = worker_options(app.state.settings, concurrency=1, name="test")
    await app.state.jobs.run_worker_async(**options, wait=False)


async def queued(owner_engine: AsyncEngine) -> list[tuple[str, str]]:
    async with owner_engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT task_name, args->>'integration_id' FROM procrastinate_jobs ORDER BY id")
        )
        return [(row[0], row[1]) for row in rows]


async def sync_of(account: Account, store: Store) -> dict[str, Any]:
    response = await account.client.get(f"{BASE}/{store.id}/sync")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


async def test_asking_for_a_sync_queues_a_job_a_worker_runs(
    app: FastAPI,
    seller: Account,
    store_server: StoreServer,
    fresh_domain: Callable[[str], str],
    owner_engine: AsyncEngine,
) -> None:
    _, store = await connected(seller, store_server, fresh_domain, "woocommerce", 120)

    asked = await seller.client.post(f"{BASE}/{store.id}/sync")
    again = await seller.client.post(f"{BASE}/{store.id}/sync")

    assert (asked.status_code, asked.json()["state"]) == (202, "queued")
    assert again.json()["state"] == "queued"
    assert await queued(owner_engine) == [(SYNC_STORE, str(store.id))]  # one job, not two
    await work(app)
    done = await sync_of(seller, store)
    # (The worker's periodic reconciliation may run it once more: nothing new then.)
    assert (done["state"], done["error"]) == ("done", None)
    assert len(await orders_of(owner_engine, store)) == 120


async def test_credentials_that_work_queue_the_first_sync_by_themselves(
    app: FastAPI,
    seller: Account,
    store_server: StoreServer,
    fresh_domain: Callable[[str], str],
    owner_engine: AsyncEngine,
) -> None:
    _, store = await connected(seller, store_server, fresh_domain, "shopify", 40)
    assert (await sync_of(seller, store))["state"] == "never"

    checked = await seller.client.post(f"{BASE}/{store.id}/check")

    assert checked.json()["ok"] is True, checked.text
    assert (await sync_of(seller, store))["state"] == "queued"
    await work(app)
    assert (await sync_of(seller, store))["state"] == "done"
    assert len(await orders_of(owner_engine, store)) == 40
    # A second check queues nothing more: the first sync has run.
    await seller.client.post(f"{BASE}/{store.id}/check")
    assert await queued(owner_engine) == []


async def test_reconciliation_syncs_each_active_integration_with_credentials(
    app: FastAPI,
    seller: Account,
    other_seller: Account,
    store_server: StoreServer,
    fresh_domain: Callable[[str], str],
    owner_engine: AsyncEngine,
) -> None:
    _, mine = await connected(seller, store_server, fresh_domain, "woocommerce", 5)
    _, theirs = await connected(other_seller, store_server, fresh_domain, "shopify", 7)
    _, paused = await connected(seller, store_server, fresh_domain, "woocommerce", 3)
    await seller.client.put(f"{BASE}/{paused.id}", json={"is_active": False})
    bare = await seller.client.post(
        BASE, json={"name": "Bare", "type": "woocommerce", "domain": "bare.example.com"}
    )

    await app.state.jobs.configure_task(RECONCILE).defer_async()
    await work(app)

    assert len(await orders_of(owner_engine, mine)) == 5
    assert len(await orders_of(owner_engine, theirs)) == 7
    assert (await sync_of(seller, paused))["state"] == "never"
    bare_sync = await seller.client.get(f"{BASE}/{bare.json()['id']}/sync")
    assert bare_sync.json()["state"] == "never"


@pytest.mark.parametrize("outcome", ["done", "failed", "unknown"])
async def test_astra_sync_runs_one_in_the_terminal(
    seller: Account,
    store_server: StoreServer,
    fresh_domain: Callable[[str], str],
    test_database: TestDatabase,
    owner_engine: AsyncEngine,
    outcome: str,
) -> None:
    sim, store = await connected(seller, store_server, fresh_domain, "woocommerce", 60)
    if outcome == "failed":
        sim.keys.clear()  # the key was revoked at the store
    integration_id = store.id if outcome != "unknown" else uuid.uuid4()
    env = os.environ | {
        "DATABASE_URL": test_database.owner_url.render_as_string(hide_password=False),
        "ASTRA_DATA_DIR": str(test_database.settings.data_dir),
        "ASTRA_STORE_API_URL": store_server.url_template,
        "ASTRA_STORE_CA_BUNDLE": str(store_server.ca_file),
    }
    # The simulated store answers from this test's event loop: wait for the command in it.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "astra.cli", "sync", str(integration_id),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)

    if outcome == "done":
        assert process.returncode == 0, err.decode()
        assert "Imported 60 orders" in out.decode()
        assert len(await orders_of(owner_engine, store)) == 60
    else:
        assert process.returncode == 1
        expected = "the sync failed" if outcome == "failed" else "No integration with this id"
        assert expected in err.decode()


async def test_the_daily_check_sets_up_again_a_webhook_woocommerce_disabled(
    app: FastAPI,
    seller: Account,
    store_server: StoreServer,
    fresh_domain: Callable[[str], str],
) -> None:
    woo = store_server.add(SimulatedWooCommerce(fresh_domain("health{}.example.com")))
    key = woo.add_key()
    credentials = {"consumer_key": key.consumer_key, "consumer_secret": key.consumer_secret}
    store = await connect_store(seller, "woocommerce", woo.domain, credentials)
    assert (await seller.client.post(f"{BASE}/{store.id}/webhooks")).status_code == 200
    # WooCommerce switches a webhook off after failed deliveries, and tells nobody.
    hook = next(iter(woo.webhooks.values()))
    hook.status = "disabled"

    await app.state.jobs.configure_task(WEBHOOK_HEALTH).defer_async()
    await work(app)

    assert {h.status for h in woo.webhooks.values()} == {"active"}
    card = (await seller.client.get(f"{BASE}/{store.id}")).json()
    assert card["connection"]["webhooks"] == "active"


async def test_reconciliation_runs_by_itself_on_a_short_interval(
    test_database: TestDatabase,
    store_server: StoreServer,
    seller: Account,
    fresh_domain: Callable[[str], str],
    owner_engine: AsyncEngine,
) -> None:
    """Nobody asks: a worker left running reconciles every ASTRA_SYNC_INTERVAL_SECONDS (2 s
    here), so orders the store has and no webhook delivered arrive by themselves."""
    settings = store_server.settings(test_database.settings, sync_interval_seconds=2)
    _, store = await connected(seller, store_server, fresh_domain, "woocommerce", 25)
    async with running(settings) as application:
        options = worker_options(settings, concurrency=2, name="ticking")
        worker = asyncio.create_task(application.state.jobs.run_worker_async(**options))
        try:
            for _ in range(100):  # at most 10 s
                if len(await orders_of(owner_engine, store)) == 25:
                    break
                await asyncio.sleep(0.1)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
    assert len(await orders_of(owner_engine, store)) == 25
