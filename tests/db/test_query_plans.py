"""At 100,000 stores every hot read is an index scan: PostgreSQL's own plans for the
project's statements, planned as the runtime role under RLS, with the real parameters."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Executable, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from astra import access
from astra.db.urls import app_url
from astra.integrations import service as integrations
from astra.orders import service as orders
from testkit import seed
from tests.conftest import TestDatabase


async def seed_100k_stores(owner_engine: AsyncEngine) -> None:
    """The benchmark's own set-based seed, with one order and one delivery per store (an
    empty table is planned as a sequential scan), then fresh statistics."""
    async with owner_engine.begin() as connection:
        await seed.seed_stores(connection, "not-a-real-hash")
        await seed.seed_orders(connection, per_store=1)
        await seed.seed_deliveries(connection)
    async with owner_engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("ANALYZE"))


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every node that reads a table."""
    found = []
    if "Relation Name" in plan:
        found.append((plan["Node Type"], plan["Relation Name"]))
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


async def plan_of(
    connection: asyncpg.Connection, acting: uuid.UUID, statement: Executable, **values: Any
) -> list[tuple[str, str]]:
    compiled = statement.compile(dialect=asyncpg_dialect())
    bound = compiled.params | values  # the values the statement carries, then these
    args = [bound[name] for name in compiled.positiontup or ()]
    async with connection.transaction():
        claims = json.dumps({"sub": str(acting), "role": "authenticated"})
        await connection.execute("SELECT set_config('request.jwt.claims', $1, true)", claims)
        explained = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {compiled}", *args)
    return _scans(json.loads(explained)[0]["Plan"])


async def test_hot_reads_are_index_scans_at_100k_stores(
    test_database: TestDatabase, owner_engine: AsyncEngine
) -> None:
    await seed_100k_stores(owner_engine)
    async with owner_engine.connect() as connection:
        ids = dict((await connection.execute(text("SELECT email, id FROM public.users"))).all())
        store_count = (await connection.execute(text("SELECT count(*) FROM integrations"))).one()
        deep_at, deep_id = (
            await connection.execute(
                text(
                    "SELECT created_at, id FROM public.integrations "
                    "ORDER BY created_at DESC, id DESC OFFSET 90000 LIMIT 1"
                )
            )
        ).one()
        twenty_store = (
            await connection.execute(
                text("SELECT id FROM public.integrations WHERE user_id = :user LIMIT 1"),
                {"user": ids[seed.SELLER_20]},
            )
        ).scalar_one()
    assert store_count[0] >= 100_000
    seller, admin = ids[seed.SELLER_20], ids[seed.ADMIN]
    cursor: dict[str, datetime | uuid.UUID] = {"after_at": deep_at, "after_id": deep_id}
    hot_reads: list[tuple[str, uuid.UUID, Executable, dict[str, Any]]] = [
        ("seller list", seller, integrations.LIST_PAGE[False, False], {"limit": 51}),
        ("admin list", admin, integrations.LIST_PAGE[True, False], {"limit": 51}),
        ("admin list, 90,000 deep", admin, integrations.LIST_PAGE[True, True], cursor),
        ("one integration", seller, integrations._GET[False], {"id": twenty_store}),
        ("access check", seller, access._VISIBLE_KEY[False], {"id": twenty_store}),
        ("seller's orders", seller, orders.LIST_PAGE[False, False, False], {}),
        (
            "one store's orders",
            seller,
            orders.LIST_PAGE[False, True, False],
            {"integration_id": twenty_store},
        ),
        ("deliveries", seller, integrations.DELIVERY_LOG, {"id": twenty_store, "limit": 20}),
    ]
    url = app_url(test_database.settings).set(drivername="postgresql")
    connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        problems = {}
        for name, acting, statement, values in hot_reads:
            params = {"viewer_id": seller, "limit": 51} | values
            scans = await plan_of(connection, acting, statement, **params)
            assert scans, f"{name}: the plan reads no table"
            sequential = [relation for node, relation in scans if node == "Seq Scan"]
            if sequential:
                problems[name] = sequential
    finally:
        await connection.close()
    assert problems == {}
