"""Where the sign-in limits live: a small table holding no email or password, reachable by
the runtime role only through its definer functions, pruned as it goes, and a migration
that comes and goes cleanly."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from astra.auth.limits import SignInLimits
from astra.db import migrate
from astra.db.session import Database, begin
from astra.db.urls import app_url, owner_url
from astra.settings import Settings
from tests.conftest import TestDatabase, _create_database, make_user, running
from tests.webhooks.test_migration import _drop_database

EMAIL = "Shopkeeper.Private@example.com"
WRONG_PASSWORD = "wrong password"
FUNCTIONS = ("app_sign_in_begin", "app_sign_in_clear", "app_sign_in_forget")


@pytest.fixture
async def runtime(test_database: TestDatabase) -> AsyncIterator[Database]:
    database = Database(app_url(test_database.settings), pool_size=1, max_overflow=0)
    yield database
    await database.dispose()


@pytest.fixture
def limits(runtime: Database, test_database: TestDatabase) -> SignInLimits:
    return SignInLimits.from_settings(test_database.settings, runtime)


async def dump(owner_engine: AsyncEngine) -> list[dict[str, Any]]:
    async with owner_engine.connect() as connection:
        result = await connection.execute(text("SELECT * FROM public.sign_in_attempts"))
        return [dict(row) for row in result.mappings()]


async def test_the_table_holds_no_email_and_no_password(
    test_database: TestDatabase, owner_engine: AsyncEngine, password_hash: str
) -> None:
    await make_user(owner_engine, EMAIL.lower(), "seller", password_hash)
    async with (
        running(test_database.settings) as application,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application, client=("10.0.0.7", 1234)),
            base_url="http://testserver",
        ) as client,
    ):
        for email in (EMAIL, "nobody.private@example.com"):
            response = await client.post(
                "/api/auth/login", json={"email": email, "password": WRONG_PASSWORD}
            )
            assert response.status_code == 401

    rows = await dump(owner_engine)
    async with owner_engine.connect() as connection:
        copied = (
            await connection.execute(
                text("SELECT string_agg(a::text, '|') FROM public.sign_in_attempts a")
            )
        ).scalar_one()
    assert [sorted(row) for row in rows] == [["account_hash", "address", "attempted_at", "id"]] * 2
    assert {bytes(row["account_hash"]) for row in rows} == {
        hashlib.sha256(EMAIL.lower().encode()).digest(),
        hashlib.sha256(b"nobody.private@example.com").digest(),
    }
    assert {row["address"] for row in rows} == {"10.0.0.7"}
    for secret in ("private", WRONG_PASSWORD):
        assert secret not in copied.lower()


async def test_the_runtime_role_reaches_the_table_only_through_the_functions(
    runtime: Database, owner_engine: AsyncEngine
) -> None:
    for statement in (
        "SELECT count(*) FROM public.sign_in_attempts",
        "INSERT INTO public.sign_in_attempts (address) VALUES ('10.0.0.1')",
        "UPDATE public.sign_in_attempts SET attempted_at = now() - interval '1 day'",
        "DELETE FROM public.sign_in_attempts",
        "TRUNCATE public.sign_in_attempts",
    ):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with begin(runtime) as db:
                await db.execute(text(statement))

    async with owner_engine.connect() as connection:
        table = (
            await connection.execute(
                text(
                    "SELECT relrowsecurity, relforcerowsecurity, "
                    "(SELECT array_agg(DISTINCT r) FROM pg_policies p, unnest(p.roles) AS r "
                    " WHERE p.tablename = 'sign_in_attempts') AS policy_roles "
                    "FROM pg_class WHERE oid = 'public.sign_in_attempts'::regclass"
                )
            )
        ).one()
        functions = (
            await connection.execute(
                text(
                    "SELECT p.proname, p.prosecdef, r.rolname AS owner, p.proconfig, "
                    "has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec, "
                    "has_function_privilege('astra_app', p.oid, 'EXECUTE') AS app_exec "
                    "FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
                    "WHERE p.proname LIKE 'app_sign_in_%' ORDER BY p.proname"
                )
            )
        ).all()
    assert (table.relrowsecurity, table.relforcerowsecurity) == (True, True)
    assert table.policy_roles == ["astra_definer"]
    assert [tuple(row) for row in functions] == [
        (name, True, "astra_definer", ['search_path=""'], False, True) for name in FUNCTIONS
    ]


async def test_expired_attempts_are_pruned_in_bounded_batches(
    limits: SignInLimits, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO public.sign_in_attempts (account_hash, address, attempted_at) "
                "SELECT sha256(('gone' || n || '@example.com')::bytea), '10.0.1.' || n, "
                "now() - interval '1 hour' FROM generate_series(1, 45) AS n"
            )
        )

    async def counts() -> tuple[int, int]:
        rows = await dump(owner_engine)
        old = sum(1 for row in rows if row["address"].startswith("10.0.1."))
        return old, len(rows) - old

    await limits.begin(address="10.0.0.1", account="someone@example.com")
    assert await counts() == (25, 1)
    await limits.begin(address="10.0.0.2", account=None)
    await limits.begin(address="10.0.0.3", account=None)
    assert await counts() == (0, 3)


def _schema(settings: Settings) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        engine = create_async_engine(owner_url(settings))
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT (SELECT array_agg(tablename::text ORDER BY tablename) "
                        "        FROM pg_tables WHERE schemaname = 'public') AS tables, "
                        "(SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc "
                        " WHERE pronamespace = 'public'::regnamespace) AS functions"
                    )
                )
            ).one()
        await engine.dispose()
        return dict(row._mapping)

    return asyncio.run(read())


def test_the_migration_comes_and_goes(test_database: TestDatabase) -> None:
    name = f"astra_migration_0004_{uuid.uuid4().hex[:8]}"
    _create_database(test_database.owner_url, name)
    url = test_database.owner_url.set(database=name).render_as_string(hide_password=False)
    settings = test_database.settings.model_copy(update={"database_url": url})

    try:
        migrate.upgrade(settings, "0002")
        before = _schema(settings)
        migrate.upgrade(settings)
        after = _schema(settings)
        migrate.downgrade(settings, "0002")
        reverted = _schema(settings)
    finally:
        asyncio.run(_drop_database(test_database, name))

    assert "sign_in_attempts" in after["tables"]
    assert set(FUNCTIONS) <= set(after["functions"])
    assert reverted == before
