"""The delivery log keeps ASTRA_DELIVERY_RETENTION_DAYS: older deliveries go, every seller's,
in bounded batches, oldest first, through the one definer function that may delete them."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.session import Database, begin
from astra.sync.retention import prune_deliveries
from tests.sync.conftest import add_deliveries, delivery_ids, seller_with_store

DAY = timedelta(days=1)


@pytest.fixture
async def stores(owner_engine: AsyncEngine, password_hash: str) -> tuple[uuid.UUID, uuid.UUID]:
    alice, alice_shop = await seller_with_store(owner_engine, "alice@example.com", password_hash)
    bob, bob_shop = await seller_with_store(owner_engine, "bob@example.com", password_hash)
    await add_deliveries(
        owner_engine, alice_shop, alice, [40 * DAY, 31 * DAY, 29 * DAY, timedelta(hours=1)]
    )
    await add_deliveries(owner_engine, bob_shop, bob, [45 * DAY, 33 * DAY, 35 * DAY, 2 * DAY])
    return alice_shop, bob_shop


async def test_only_deliveries_past_retention_go_for_every_seller_in_batches(
    database: Database, owner_engine: AsyncEngine, stores: tuple[uuid.UUID, uuid.UUID]
) -> None:
    alice_shop, bob_shop = stores

    batches = await prune_deliveries(database, retention_days=30, batch_size=2)

    assert batches == [2, 2, 1]
    assert await delivery_ids(owner_engine) == {
        alice_shop: {"2-696h", "3-1h"},
        bob_shop: {"3-48h"},
    }


async def test_a_batch_takes_the_oldest_first_and_no_more(
    database: Database, owner_engine: AsyncEngine, stores: tuple[uuid.UUID, uuid.UUID]
) -> None:
    alice_shop, bob_shop = stores
    async with begin(database) as db:
        removed = await db.execute(text("SELECT public.app_prune_deliveries(30, 2)"))
        assert removed.scalar_one() == 2

    remaining = await delivery_ids(owner_engine)
    assert "0-1080h" not in remaining[bob_shop]  # 45 days, the oldest
    assert "0-960h" not in remaining[alice_shop]  # 40 days
    assert {"1-744h"} <= remaining[alice_shop] and {"2-840h", "1-792h"} <= remaining[bob_shop]


async def test_nothing_younger_than_a_day_can_go_whatever_is_asked(
    database: Database, owner_engine: AsyncEngine, stores: tuple[uuid.UUID, uuid.UUID]
) -> None:
    alice_shop, _ = stores
    for days, batch in ((0, 10), (-5, 10), (30, 0)):
        with pytest.raises(DBAPIError, match="at least a day"):
            async with begin(database) as db:
                await db.execute(
                    text("SELECT public.app_prune_deliveries(:d, :b)"), {"d": days, "b": batch}
                )
    assert await prune_deliveries(database, retention_days=1) == [7]
    assert await delivery_ids(owner_engine) == {alice_shop: {"3-1h"}}


async def test_the_runtime_role_cannot_delete_deliveries_itself(
    database: Database, owner_engine: AsyncEngine, stores: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with pytest.raises(DBAPIError, match="permission denied"):
        async with begin(database) as db:
            await db.execute(text("DELETE FROM public.webhook_deliveries"))
    assert sum(map(len, (await delivery_ids(owner_engine)).values())) == 8
