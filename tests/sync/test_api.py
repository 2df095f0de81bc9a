"""POST and GET /api/integrations/{id}/sync, for anonymous, the owner, another seller and
an admin; the state they show as the engine runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.settings import Settings
from astra.sync.engine import run_sync
from astra.sync.state import NO_CREDENTIALS, SyncState
from testkit.simulators.server import StoreServer
from testkit.simulators.woocommerce import SimulatedWooCommerce
from testkit.stores import Store, connect_store, fetch
from tests.conftest import Account, TestDatabase

FIELDS = {
    "state",
    "imported",
    "total",
    "missed_by_webhook",
    "started_at",
    "finished_at",
    "last_synced_at",
    "error",
}
NEVER = dict.fromkeys(FIELDS) | {"state": "never", "imported": 0, "missed_by_webhook": 0}


@pytest.fixture
def settings(store_server: StoreServer, test_database: TestDatabase) -> Settings:
    return store_server.settings(test_database.settings)


@pytest.fixture
def sync(app: FastAPI, settings: Settings) -> Callable[..., Awaitable[SyncState]]:
    """sync(store, ...): one run_sync of the store's integration, as the app's runtime role."""

    async def run(store: Store, **kwargs: Any) -> SyncState:
        return await run_sync(app.state.db, settings, store.id, **kwargs)

    return run


@pytest.fixture
async def woo(
    store_server: StoreServer, fresh_domain: Callable[[str], str], seller: Account
) -> tuple[SimulatedWooCommerce, Store]:
    """The seller's WooCommerce store of 150 orders, connected with a REST key."""
    sim = store_server.add(SimulatedWooCommerce(fresh_domain("api{}.example.com"), order_count=150))
    key = sim.add_key("read")
    credentials = {"consumer_key": key.consumer_key, "consumer_secret": key.consumer_secret}
    return sim, await connect_store(seller, "woocommerce", sim.domain, credentials)


def path(store: Store | uuid.UUID) -> str:
    return f"/api/integrations/{store.id if isinstance(store, Store) else store}/sync"


def body(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()
    assert set(data) == FIELDS
    return data


async def syncs_rows(owner_engine: AsyncEngine) -> list[dict[str, Any]]:
    return await fetch(owner_engine, "SELECT * FROM syncs")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_anonymous_is_401(
    anonymous: httpx.AsyncClient,
    woo: tuple[SimulatedWooCommerce, Store],
    owner_engine: AsyncEngine,
    method: str,
) -> None:
    response = await anonymous.request(method, path(woo[1]))
    assert response.status_code == 401
    assert await syncs_rows(owner_engine) == []


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_another_seller_is_403_and_changes_nothing(
    other_seller: Account,
    woo: tuple[SimulatedWooCommerce, Store],
    owner_engine: AsyncEngine,
    method: str,
) -> None:
    response = await other_seller.client.request(method, path(woo[1]))
    assert response.status_code == 403
    assert response.json() == {"detail": "This integration belongs to another account."}
    assert await syncs_rows(owner_engine) == []


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_no_such_integration_is_404_and_a_malformed_id_422(
    seller: Account, method: str
) -> None:
    assert (await seller.client.request(method, path(uuid.uuid4()))).status_code == 404
    assert (
        await seller.client.request(method, "/api/integrations/not-an-id/sync")
    ).status_code == 422


async def test_the_owner_queues_a_sync_once_and_sees_it_run(
    sync: Callable[..., Awaitable[SyncState]],
    seller: Account,
    woo: tuple[SimulatedWooCommerce, Store],
) -> None:
    _, store = woo
    assert body(await seller.client.get(path(store)), 200) == NEVER

    queued = body(await seller.client.post(path(store)), 202)
    assert queued == NEVER | {"state": "queued"}
    # Asking again while it waits changes nothing.
    assert body(await seller.client.post(path(store)), 202) == queued
    assert body(await seller.client.get(path(store)), 200) == queued

    await sync(store)

    done = body(await seller.client.get(path(store)), 200)
    assert (done["state"], done["imported"], done["total"]) == ("done", 150, 150)
    assert (done["missed_by_webhook"], done["error"]) == (0, None)
    assert done["started_at"] <= done["finished_at"] == done["last_synced_at"]
    # Queued again after it finished: the last run's figures stay until the next one starts.
    again = body(await seller.client.post(path(store)), 202)
    assert (again["state"], again["imported"], again["last_synced_at"]) == (
        "queued",
        150,
        done["last_synced_at"],
    )


async def test_an_admin_queues_and_reads_a_sellers_sync(
    admin: Account, woo: tuple[SimulatedWooCommerce, Store], owner_engine: AsyncEngine
) -> None:
    _, store = woo
    assert body(await admin.client.get(path(store)), 200) == NEVER
    assert body(await admin.client.post(path(store)), 202)["state"] == "queued"
    [row] = await syncs_rows(owner_engine)
    assert (
        row["user_id"]
        == (await fetch(owner_engine, "SELECT user_id FROM integrations"))[0]["user_id"]
    )
    assert body(await admin.client.get(path(store)), 200)["state"] == "queued"


async def test_asking_while_one_runs_returns_the_running_one(
    sync: Callable[..., Awaitable[SyncState]],
    seller: Account,
    woo: tuple[SimulatedWooCommerce, Store],
) -> None:
    _, store = woo
    first_page = asyncio.Event()
    release = asyncio.Event()

    async def hold(state: SyncState) -> None:
        first_page.set()
        await release.wait()

    running = asyncio.create_task(sync(store, progress=hold))
    await first_page.wait()
    try:
        asked = body(await seller.client.post(path(store)), 202)
        seen = body(await seller.client.get(path(store)), 200)
    finally:
        release.set()
        await running
    assert (asked["state"], asked["imported"], asked["total"]) == ("running", 100, 150)
    assert seen == asked


async def test_without_credentials_a_sync_is_refused_and_nothing_changes(
    seller: Account, owner_engine: AsyncEngine
) -> None:
    store = await connect_store(seller, "woocommerce", "keyless.example.com")
    response = await seller.client.post(path(store))
    assert response.status_code == 409
    assert response.json() == {"detail": NO_CREDENTIALS}
    assert await syncs_rows(owner_engine) == []
    assert body(await seller.client.get(path(store)), 200) == NEVER


async def test_a_failed_sync_says_why_and_asking_again_queues_it(
    sync: Callable[..., Awaitable[SyncState]],
    seller: Account,
    woo: tuple[SimulatedWooCommerce, Store],
) -> None:
    sim, store = woo
    sim.keys.clear()
    await sync(store)
    failed = body(await seller.client.get(path(store)), 200)
    assert failed["state"] == "failed"
    assert "consumer key" in failed["error"]
    queued = body(await seller.client.post(path(store)), 202)
    assert (queued["state"], queued["error"]) == ("queued", None)
