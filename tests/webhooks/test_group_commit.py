"""Group commit: deliveries arriving together share one transaction, each still answered
only once it is committed, each written acting as its own owner, and a failure answered
5xx for exactly the deliveries it touches."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.app import create_app
from astra.settings import Settings
from astra.webhooks.batch import BatchCounts, WebhookBatcher
from testkit.stores import (
    T0,
    Store,
    deliver,
    deliveries_of,
    encode,
    fetch,
    orders_of,
    send_order,
    shopify_headers,
    shopify_order,
)
from tests.conftest import Account, TestDatabase, client_for, running
from tests.webhooks.test_endpoint import injected_failure

# Long enough that every delivery a test sends at once lands in one batch.
WINDOW_MS = 300.0


def _settings(test_database: TestDatabase, window_ms: float) -> Settings:
    return test_database.settings.model_copy(update={"webhook_batch_ms": window_ms})


@pytest.fixture
async def batching(test_database: TestDatabase) -> AsyncIterator[FastAPI]:
    async with running(_settings(test_database, WINDOW_MS)) as app:
        yield app


@pytest.fixture
async def client(batching: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(batching) as client:
        yield client


def counts(app: FastAPI) -> BatchCounts:
    batcher: WebhookBatcher = app.state.webhook_batcher
    return batcher.counts


async def transactions_of(owner_engine: AsyncEngine, table: str, store: Store) -> int:
    """How many transactions wrote the store's rows of `table` (each row's xmin)."""
    [row] = await fetch(
        owner_engine,
        f"SELECT count(DISTINCT xmin::text) AS n FROM public.{table} WHERE integration_id = :id",
        id=store.id,
    )
    return int(row["n"])


async def test_deliveries_arriving_together_are_committed_in_one_transaction(
    batching: FastAPI,
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    shopify_store: Store,
) -> None:
    responses = await asyncio.gather(*(send_order(client, shopify_store, n) for n in range(10)))

    assert [r.json() for r in responses] == [{"outcome": "stored"}] * 10
    assert counts(batching) == BatchCounts(
        batches=1, committed=1, deliveries=10, largest=10, alone=0
    )
    assert len(await orders_of(owner_engine, shopify_store)) == 10
    assert await transactions_of(owner_engine, "webhook_deliveries", shopify_store) == 1
    assert await transactions_of(owner_engine, "orders", shopify_store) == 1


async def test_no_window_is_one_transaction_per_delivery(
    test_database: TestDatabase, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    async with running(_settings(test_database, 0)) as app, client_for(app) as client:
        responses = await asyncio.gather(*(send_order(client, shopify_store, n) for n in range(6)))

        assert [r.json() for r in responses] == [{"outcome": "stored"}] * 6
        assert counts(app) == BatchCounts(alone=6)
    assert await transactions_of(owner_engine, "webhook_deliveries", shopify_store) == 6


@pytest.fixture
async def acting_log(owner_engine: AsyncEngine) -> AsyncIterator[None]:
    """Note, for every delivery row written, whom the writing transaction acted as, and as
    which database role."""
    async with owner_engine.begin() as connection:
        for statement in (
            "CREATE TABLE public.test_acting (delivery_id text, row_owner uuid, acting uuid, "
            "role text)",
            "GRANT INSERT ON public.test_acting TO astra_app",
            "CREATE FUNCTION public.test_note_acting() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO public.test_acting VALUES "
            "(NEW.delivery_id, NEW.user_id, public.app_user_id(), current_user); "
            "RETURN NEW; END $$",
            "CREATE TRIGGER test_note_acting BEFORE INSERT ON public.webhook_deliveries "
            "FOR EACH ROW EXECUTE FUNCTION public.test_note_acting()",
        ):
            await connection.execute(text(statement))
    try:
        yield
    finally:
        async with owner_engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER test_note_acting ON webhook_deliveries"))
            await connection.execute(text("DROP FUNCTION public.test_note_acting()"))
            await connection.execute(text("DROP TABLE public.test_acting"))


async def test_each_delivery_of_a_batch_is_written_acting_as_its_owner(
    batching: FastAPI,
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    seller: Account,
    other_seller: Account,
    shopify_store: Store,
    other_store: Store,
    acting_log: None,
) -> None:
    """Two sellers' deliveries, interleaved, in one transaction: RLS checks each row against
    the owner of the delivery writing it, as the runtime role, never a bypass."""
    stores = [shopify_store, other_store] * 4
    responses = await asyncio.gather(
        *(send_order(client, store, n) for n, store in enumerate(stores))
    )

    assert [r.json() for r in responses] == [{"outcome": "stored"}] * 8
    assert counts(batching).committed == 1
    noted = await fetch(owner_engine, "SELECT * FROM public.test_acting")
    assert len(noted) == 8
    assert all(row["acting"] == row["row_owner"] for row in noted)
    assert {row["role"] for row in noted} == {"astra_app"}
    for store, owner in ((shopify_store, seller), (other_store, other_seller)):
        delivered = await deliveries_of(owner_engine, store)
        assert len(delivered) == 4
        assert {d["user_id"] for d in delivered} == {owner.id}
        # Each seller sees their own four orders, and none of the other's.
        listed = await owner.client.get(f"/api/integrations/{store.id}")
        assert listed.json()["order_count"] == 4


async def test_a_delivery_failing_in_its_batch_fails_alone(
    batching: FastAPI, client: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    """One order the database refuses (a trigger raising for it): its batch rolls back,
    every delivery is received again on its own, and only that one answers 503."""
    async with injected_failure(owner_engine, "orders", only="NEW.platform_order_id = '3'"):
        responses = await asyncio.gather(*(send_order(client, shopify_store, n) for n in range(6)))

    assert [r.status_code for r in responses] == [200, 200, 200, 503, 200, 200]
    assert responses[3].headers["retry-after"] == "5"
    assert "injected" not in responses[3].text
    assert counts(batching) == BatchCounts(batches=1, committed=0, deliveries=6, largest=6, alone=6)
    stored = {o["platform_order_id"] for o in await orders_of(owner_engine, shopify_store)}
    assert stored == {"0", "1", "2", "4", "5"}
    assert len(await deliveries_of(owner_engine, shopify_store)) == 5


async def test_an_order_the_database_cannot_hold_is_refused_alone_in_a_batch(
    batching: FastAPI, client: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    bad = encode(shopify_order(99)).replace(b'"total_price":"199.00"', b'"total_price":1e-999999')
    good = [encode(shopify_order(n)) for n in range(4)]

    responses = await asyncio.gather(
        *(
            deliver(client, shopify_store, b, shopify_headers(shopify_store, b))
            for b in [bad, *good]
        )
    )

    assert [r.json()["outcome"] for r in responses] == ["refused"] + ["stored"] * 4
    assert counts(batching).batches == 1
    assert len(await orders_of(owner_engine, shopify_store)) == 4
    outcomes = sorted(d["outcome"] for d in await deliveries_of(owner_engine, shopify_store))
    assert outcomes == ["refused"] + ["stored"] * 4


async def test_a_failure_at_commit_fails_every_delivery_it_touches(
    batching: FastAPI, client: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    """A deferred check failing at COMMIT: no 2xx for a delivery that was not committed."""
    async with injected_failure(owner_engine, "webhook_deliveries", at_commit=True):
        responses = await asyncio.gather(*(send_order(client, shopify_store, n) for n in range(4)))

    assert [r.status_code for r in responses] == [503] * 4
    assert await deliveries_of(owner_engine, shopify_store) == []
    assert await orders_of(owner_engine, shopify_store) == []


async def test_refusals_in_a_batch_write_nothing_and_leave_the_rest(
    batching: FastAPI, client: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order(7))
    forged = shopify_headers(shopify_store, body, secret="guessed-secret-0123456789")
    unknown = "/api/webhooks/order?id=00000000-0000-4000-8000-000000000000"

    responses = await asyncio.gather(
        client.post(shopify_store.url, content=body, headers=forged),
        client.post(unknown, content=body, headers=shopify_headers(shopify_store, body)),
        client.post(shopify_store.url, content=b"{", headers=shopify_headers(shopify_store, b"{")),
        send_order(client, shopify_store, 8),
    )

    assert [r.status_code for r in responses] == [401, 404, 400, 200]
    assert counts(batching) == BatchCounts(batches=1, committed=1, deliveries=4, largest=4, alone=0)
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["platform_order_id"] == "8"


async def test_one_delivery_twice_in_a_batch_is_stored_once(
    batching: FastAPI, client: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order(1))
    headers = shopify_headers(shopify_store, body)

    responses = await asyncio.gather(
        deliver(client, shopify_store, body, headers),
        deliver(client, shopify_store, body, headers),
        send_order(client, shopify_store, 2),
    )

    assert sorted(r.json()["outcome"] for r in responses[:2]) == ["duplicate", "stored"]
    assert counts(batching).committed == 1
    assert len(await deliveries_of(owner_engine, shopify_store)) == 2


async def test_versions_of_one_order_in_a_batch_keep_the_newest(
    batching: FastAPI, client: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    versions = [
        (n, encode(shopify_order(updated_at=T0 + timedelta(minutes=n), total=f"{n}.00")))
        for n in range(1, 9)
    ]
    random.Random(7).shuffle(versions)

    responses = await asyncio.gather(
        *(
            deliver(
                client,
                shopify_store,
                body,
                shopify_headers(shopify_store, body, topic="orders/updated"),
            )
            for _, body in versions
        )
    )

    assert counts(batching).committed == 1
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["total"] == Decimal("8.00")
    outcomes = {n: r.json()["outcome"] for (n, _), r in zip(versions, responses, strict=True)}
    # Each written in its turn: the newest is stored, an older one after a newer is stale.
    assert outcomes[8] == "stored"
    assert set(outcomes.values()) <= {"stored", "stale"}
    assert len(await deliveries_of(owner_engine, shopify_store)) == 8


async def test_concurrent_batches_of_two_processes_never_deadlock(
    test_database: TestDatabase, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    """Two apps (two pools, as two worker processes) each get a batch of the same orders,
    in opposite orders: each batch takes its locks in one order, so both commit."""
    order_ids = list(range(1, 13))

    async def batch(app: FastAPI, ids: list[int]) -> list[httpx.Response]:
        async with client_for(app) as client:
            return await asyncio.gather(
                *(
                    send_order(client, shopify_store, n, updated_at=T0 + timedelta(seconds=k))
                    for k, n in enumerate(ids)
                )
            )

    settings = _settings(test_database, WINDOW_MS)
    async with running(settings) as first, running(settings) as second:
        results: list[list[httpx.Response]] = await asyncio.gather(
            batch(first, order_ids), batch(second, order_ids[::-1])
        )
        assert all(r.status_code == 200 for answers in results for r in answers)
        assert counts(first).committed == counts(first).batches == 1
        assert counts(second).committed == counts(second).batches == 1
    assert len(await orders_of(owner_engine, shopify_store)) == 12
    assert len(await deliveries_of(owner_engine, shopify_store)) == 24


async def test_shutdown_commits_every_waiting_delivery_before_the_pool_closes(
    test_database: TestDatabase, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    """The lifespan's end sends the waiting batch at once (its window is far longer), and
    the pool closes only once it is committed; a delivery after that is a 503."""
    app = create_app(_settings(test_database, 30_000.0))
    batcher: WebhookBatcher
    async with client_for(app) as client:
        async with app.router.lifespan_context(app):
            batcher = app.state.webhook_batcher
            sent = [asyncio.create_task(send_order(client, shopify_store, n)) for n in range(3)]
            for _ in range(1000):
                if batcher.waiting == 3:
                    break
                await asyncio.sleep(0.01)
            assert batcher.waiting == 3
            started = time.monotonic()
        answers: list[Any] = await asyncio.gather(*sent)
        assert time.monotonic() - started < 10
        assert [a.json() for a in answers] == [{"outcome": "stored"}] * 3
        assert len(await orders_of(owner_engine, shopify_store)) == 3

        late = await send_order(client, shopify_store, 4)
    assert late.status_code == 503
    assert late.headers["retry-after"] == "5"
