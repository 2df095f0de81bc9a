"""The sync state: migration 0008 (syncs, orders.origin) both ways, row-level security on
syncs as the runtime role, and the claim that lets one run at a time write."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from astra.db import migrate
from astra.db.session import Database, Transaction, act_as, begin
from astra.db.tables import SyncStatus
from astra.sync import state
from tests.conftest import TestDatabase, _create_database, make_user


@pytest.fixture
async def world(owner_engine: AsyncEngine, password_hash: str) -> dict[str, uuid.UUID]:
    """Alice and Bob with one store each; an admin."""
    ids = {
        name: await make_user(owner_engine, f"{name}@example.com", role, password_hash)
        for name, role in (("alice", "seller"), ("bob", "seller"), ("root", "admin"))
    }
    async with owner_engine.begin() as connection:
        for person in ("alice", "bob"):
            ids[f"{person}_shop"] = (
                await connection.execute(
                    text(
                        "INSERT INTO integrations (user_id, name, type, domain, webhook_secret) "
                        "VALUES (:user_id, 'Shop', 'woocommerce', :domain, repeat('s', 32)) "
                        "RETURNING id"
                    ),
                    {"user_id": ids[person], "domain": f"{person}.example.com"},
                )
            ).scalar_one()
    return ids


async def acting(database: Database, user_id: uuid.UUID) -> Transaction:
    db = Transaction(database)
    await act_as(db, user_id)
    return db


async def test_claims_let_one_run_at_a_time(
    database: Database, world: dict[str, uuid.UUID], owner_engine: AsyncEngine
) -> None:
    shop, alice = world["alice_shop"], world["alice"]
    db = await acting(database, alice)
    first = await state.claim(db, shop, alice)
    await db.end(commit=True)
    assert first is not None
    assert first.state.state is SyncStatus.running
    assert (first.updated_since, first.cursor) == (None, None)

    db = await acting(database, alice)
    assert await state.claim(db, shop, alice) is None
    assert (await state.read(db, shop)).state is SyncStatus.running
    await db.end(commit=True)

    # The first run's process died: once its lease is over, another run takes over, and the
    # first one's writes are refused from then on.
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE syncs SET heartbeat_at = now() - CAST(:lease AS interval) - interval '1 second'"
            ),
            {"lease": state.LEASE},
        )
    db = await acting(database, alice)
    second = await state.claim(db, shop, alice)
    await db.end(commit=True)
    assert second is not None
    assert second.run_id != first.run_id
    db = await acting(database, alice)
    with pytest.raises(state.LostClaim):
        await state.save_page(db, first, cursor="x", imported=1, missed=0, total=None, note=None)
    with pytest.raises(state.LostClaim):
        await state.beat(db, first)
    assert await state.fail(db, first, "too late") is None
    await db.end(commit=False)


async def test_a_run_resumes_its_cursor_and_the_next_one_starts_from_the_last(
    database: Database, world: dict[str, uuid.UUID]
) -> None:
    shop, alice = world["alice_shop"], world["alice"]
    db = await acting(database, alice)
    run = await state.claim(db, shop, alice)
    assert run is not None
    await state.save_page(db, run, cursor="page-2", imported=100, missed=2, total=250, note=None)
    stopped = await state.fail(db, run, "The store went away.")
    await db.end(commit=True)
    assert stopped is not None
    assert (stopped.state, stopped.error, stopped.imported) == (
        SyncStatus.failed,
        "The store went away.",
        100,
    )

    db = await acting(database, alice)
    resumed = await state.claim(db, shop, alice)
    assert resumed is not None
    assert (resumed.cursor, resumed.state.imported, resumed.state.total) == ("page-2", 100, 250)
    assert resumed.state.error is None
    done = await state.save_page(
        db, resumed, cursor=None, imported=150, missed=1, total=250, note=None
    )
    await db.end(commit=True)
    assert (done.state, done.imported, done.total, done.missed_by_webhook) == (
        SyncStatus.done,
        250,
        250,
        3,
    )
    assert done.started_at is not None
    assert done.last_synced_at == done.finished_at

    db = await acting(database, alice)
    later = await state.claim(db, shop, alice)
    await db.end(commit=True)
    assert later is not None
    # Everything changed since the last run began, with a few minutes' overlap.
    assert later.updated_since == done.started_at - state.OVERLAP
    assert (later.cursor, later.state.imported, later.state.total) == (None, 0, None)
    assert later.state.missed_by_webhook == 3


async def test_rls_keeps_each_seller_to_their_own_syncs(
    database: Database, world: dict[str, uuid.UUID]
) -> None:
    for person in ("alice", "bob"):
        db = await acting(database, world[person])
        assert await state.claim(db, world[f"{person}_shop"], world[person]) is not None
        await db.end(commit=True)

    db = await acting(database, world["alice"])
    seen = (await db.execute(text("SELECT integration_id FROM syncs"))).scalars().all()
    assert seen == [world["alice_shop"]]
    # Bob's row is out of reach: not read, not changed, not claimable under his name.
    assert (await state.read(db, world["bob_shop"])).state is SyncStatus.never
    changed = await db.execute(text("UPDATE syncs SET imported = 7 WHERE user_id = :bob"), world)
    assert changed.rowcount == 0
    await db.end(commit=True)
    db = await acting(database, world["alice"])
    with pytest.raises(DBAPIError, match="row-level security"):
        await db.execute(
            text("INSERT INTO syncs (integration_id, user_id, state) VALUES (:s, :u, 'queued')"),
            {"s": world["bob_shop"], "u": world["bob"]},
        )
    await db.end(commit=False)

    db = await acting(database, world["root"])
    everyone = set((await db.execute(text("SELECT integration_id FROM syncs"))).scalars())
    await db.end(commit=True)
    assert everyone == {world["alice_shop"], world["bob_shop"]}

    # No one acting: nothing.
    async with begin(database) as nobody:
        assert (await nobody.execute(text("SELECT count(*) FROM syncs"))).scalar_one() == 0


async def test_read_many_reads_a_page_of_syncs_as_rls_lets_the_caller(
    database: Database, world: dict[str, uuid.UUID]
) -> None:
    """The cards' one query: the caller's syncs among those asked for, no row for a store
    that never synced or that the caller may not see."""
    db = await acting(database, world["alice"])
    assert await state.claim(db, world["alice_shop"], world["alice"]) is not None
    await db.end(commit=True)
    db = await acting(database, world["bob"])
    assert await state.claim(db, world["bob_shop"], world["bob"]) is not None
    await db.end(commit=True)

    shops = [world["alice_shop"], world["bob_shop"], uuid.uuid4()]
    for person, visible in (
        ("alice", {world["alice_shop"]}),
        ("bob", {world["bob_shop"]}),
        ("root", {world["alice_shop"], world["bob_shop"]}),
    ):
        db = await acting(database, world[person])
        found = await state.read_many(db, shops)
        assert set(found) == visible, person
        assert {sync.state for sync in found.values()} == {SyncStatus.running}
        assert await state.read_many(db, []) == {}
        await db.end(commit=False)


def test_0008_up_down_up_and_old_orders_came_by_webhook(test_database: TestDatabase) -> None:
    name = f"astra_migration_0008_{uuid.uuid4().hex[:8]}"
    _create_database(test_database.owner_url, name)
    url = test_database.owner_url.set(database=name).render_as_string(hide_password=False)
    settings = test_database.settings.model_copy(update={"database_url": url})

    async def run(sql: str) -> list[dict[str, Any]]:
        engine = create_async_engine(test_database.owner_url.set(database=name))
        async with engine.begin() as connection:
            result = await connection.execute(text(sql))
            rows = [dict(row) for row in result.mappings()] if result.returns_rows else []
        await engine.dispose()
        return rows

    tables = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = 'syncs'"
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'"
    migrate.upgrade(settings, "0006")
    asyncio.run(
        run(
            "WITH u AS (INSERT INTO users (email, password_hash) VALUES ('a@example.com', 'x') "
            "RETURNING id), i AS (INSERT INTO integrations (user_id, name, type, domain, "
            "webhook_secret) SELECT id, 'Shop', 'woocommerce', 'a.example.com', repeat('s', 32) FROM u "
            "RETURNING id, user_id) INSERT INTO orders (integration_id, user_id, platform, "
            "platform_order_id, raw) SELECT id, user_id, 'woocommerce', '1', '{}' FROM i"
        )
    )
    migrate.upgrade(settings, "0008")
    assert asyncio.run(run("SELECT origin FROM orders")) == [{"origin": "webhook"}]
    assert asyncio.run(run(tables)) == [{"tablename": "syncs"}]
    migrate.downgrade(settings, "0006")
    assert asyncio.run(run(tables)) == []
    assert "origin" not in {row["column_name"] for row in asyncio.run(run(columns))}
    migrate.upgrade(settings, "0008")
    assert asyncio.run(run(tables)) == [{"tablename": "syncs"}]
