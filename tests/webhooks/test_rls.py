"""Row-level security alone guards orders and deliveries: the app's runtime role, no
WHERE clauses, no app code."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from astra.db.urls import app_url
from tests.conftest import TestDatabase, make_user
from tests.db.test_rls import act_as

INSERT_ORDER = text(
    "INSERT INTO orders (integration_id, user_id, platform, platform_order_id, raw) "
    "VALUES (:integration_id, :user_id, 'woocommerce', :order_id, '{}'::jsonb)"
)
INSERT_DELIVERY = text(
    "INSERT INTO webhook_deliveries (integration_id, user_id, delivery_id, topic, outcome, "
    "body_bytes) VALUES (:integration_id, :user_id, :delivery_id, 'order.created', 'stored', 2)"
)


@pytest.fixture
async def app_engine(test_database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(app_url(test_database.settings), pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


async def scalars(connection: AsyncConnection, sql: str, **params: Any) -> set[Any]:
    return set((await connection.execute(text(sql), params)).scalars())


@pytest.fixture
async def world(owner_engine: AsyncEngine, password_hash: str) -> dict[str, uuid.UUID]:
    """Alice and Bob with one store each, an order and a delivery in each; an admin."""
    ids = {
        "alice": await make_user(owner_engine, "alice@example.com", "seller", password_hash),
        "bob": await make_user(owner_engine, "bob@example.com", "seller", password_hash),
        "admin": await make_user(owner_engine, "root@example.com", "admin", password_hash),
    }
    async with owner_engine.begin() as connection:
        for person in ("alice", "bob"):
            shop = (
                await connection.execute(
                    text(
                        "INSERT INTO integrations (user_id, name, type, domain, webhook_secret) "
                        "VALUES (:user_id, 'Shop', 'woocommerce', :domain, repeat('s', 32)) "
                        "RETURNING id"
                    ),
                    {"user_id": ids[person], "domain": f"{person}.example.com"},
                )
            ).scalar_one()
            ids[f"{person}_shop"] = shop
            row = {"integration_id": shop, "user_id": ids[person]}
            await connection.execute(INSERT_ORDER, {**row, "order_id": f"{person}-1"})
            await connection.execute(INSERT_DELIVERY, {**row, "delivery_id": f"{person}-d1"})
    return ids


@pytest.mark.parametrize(
    ("table", "column"), [("orders", "platform_order_id"), ("webhook_deliveries", "delivery_id")]
)
async def test_seller_sees_only_own_rows(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID], table: str, column: str
) -> None:
    async with app_engine.begin() as connection:
        await act_as(connection, world["alice"])
        seen = await scalars(connection, f"SELECT {column} FROM {table}")
    assert seen == {"alice-1" if table == "orders" else "alice-d1"}


@pytest.mark.parametrize("table", ["orders", "webhook_deliveries"])
async def test_admin_sees_all_and_no_context_sees_nothing(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID], table: str
) -> None:
    async with app_engine.begin() as connection:
        await act_as(connection, world["admin"])
        admin_count = (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
    async with app_engine.connect() as connection:
        anonymous_count = (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
    assert (admin_count, anonymous_count) == (2, 0)


async def test_seller_cannot_write_rows_owned_by_someone_else(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    bobs = {"integration_id": world["bob_shop"], "user_id": world["bob"]}
    for statement, params in (
        (INSERT_ORDER, {**bobs, "order_id": "forged"}),
        (INSERT_DELIVERY, {**bobs, "delivery_id": "forged"}),
    ):
        with pytest.raises(DBAPIError, match="row-level security"):
            async with app_engine.begin() as connection:
                await act_as(connection, world["alice"])
                await connection.execute(statement, params)


async def test_own_user_id_on_another_sellers_integration_is_refused(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    """The owner column must be the integration's owner: the composite foreign key."""
    with pytest.raises(DBAPIError, match="orders_integration_fkey"):
        async with app_engine.begin() as connection:
            await act_as(connection, world["alice"])
            await connection.execute(
                INSERT_ORDER,
                {"integration_id": world["bob_shop"], "user_id": world["alice"], "order_id": "x"},
            )


async def test_updates_of_another_sellers_rows_touch_nothing(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    async with app_engine.begin() as connection:
        await act_as(connection, world["alice"])
        order = await connection.execute(
            text("UPDATE orders SET financial_status = 'stolen' WHERE user_id = :bob"),
            {"bob": world["bob"]},
        )
        delivery = await connection.execute(
            text("UPDATE webhook_deliveries SET outcome = 'held' WHERE user_id = :bob"),
            {"bob": world["bob"]},
        )
    assert (order.rowcount, delivery.rowcount) == (0, 0)


async def test_admin_reads_but_does_not_write_orders(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    async with app_engine.begin() as connection:
        await act_as(connection, world["admin"])
        updated = await connection.execute(text("UPDATE orders SET financial_status = 'x'"))
    assert updated.rowcount == 0


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM orders",
        "DELETE FROM webhook_deliveries",
        "UPDATE webhook_deliveries SET topic = 'x'",
        "TRUNCATE orders",
    ],
)
async def test_runtime_role_cannot_remove_or_rewrite_the_log(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID], statement: str
) -> None:
    with pytest.raises(DBAPIError, match="permission denied"):
        async with app_engine.begin() as connection:
            await act_as(connection, world["alice"])
            await connection.execute(text(statement))


async def test_webhook_target_lookup_reveals_only_what_verification_needs(
    app_engine: AsyncEngine, owner_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE integrations SET previous_webhook_secret = repeat('p', 32), "
                "previous_secret_expires_at = now() - interval '1 minute' WHERE id = :id"
            ),
            {"id": world["bob_shop"]},
        )
    async with app_engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT * FROM public.app_webhook_target(:id)"), {"id": world["bob_shop"]}
            )
        ).one()
        missing = (
            await connection.execute(
                text("SELECT * FROM public.app_webhook_target(:id)"), {"id": uuid.uuid4()}
            )
        ).all()
        # Still nothing else: the function is the only way to the row without a context.
        visible = (await connection.execute(text("SELECT count(*) FROM integrations"))).scalar()
    assert set(row._mapping) == {
        "user_id",
        "type",
        "domain",
        "is_active",
        "webhook_secret",
        "previous_webhook_secret",
        "app_client_secret",
    }
    assert row.user_id == world["bob"]
    assert row.previous_webhook_secret is None, "an expired secret never leaves the database"
    assert missing == []
    assert visible == 0


async def test_webhook_target_is_not_executable_by_public(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT p.prosecdef, r.rolname AS owner, p.proconfig, "
                    "has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec, "
                    "has_function_privilege('astra_app', p.oid, 'EXECUTE') AS app_exec "
                    "FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
                    "WHERE p.proname = 'app_webhook_target'"
                )
            )
        ).one()
    assert row.prosecdef
    assert row.owner == "astra_definer"
    assert row.proconfig == ['search_path=""']
    assert (row.public_exec, row.app_exec) == (False, True)


async def test_new_tables_force_rls(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE relname IN ('orders', 'webhook_deliveries')"
                )
            )
        ).all()
    assert sorted(tuple(row) for row in rows) == [
        ("orders", True, True),
        ("webhook_deliveries", True, True),
    ]
