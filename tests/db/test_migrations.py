"""Migrations are reversible: up, down to nothing, and up again on a fresh database."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from astra.crypto import decrypt, encrypt
from astra.db import migrate
from tests.conftest import TestDatabase, _create_database


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(make_url(url).set(drivername="postgresql+asyncpg"))
    async with engine.connect() as connection:
        names = (
            await connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ).scalars()
        result = set(names)
    await engine.dispose()
    return result


def test_upgrade_downgrade_upgrade(test_database: TestDatabase) -> None:
    import asyncio

    name = f"astra_migrations_{uuid.uuid4().hex[:8]}"
    _create_database(test_database.owner_url, name)
    url = test_database.owner_url.set(database=name).render_as_string(hide_password=False)
    settings = test_database.settings.model_copy(update={"database_url": url})

    migrate.upgrade(settings)
    assert {"users", "sessions", "integrations"} <= asyncio.run(_tables(url))
    migrate.downgrade(settings, "base")
    assert asyncio.run(_tables(url)) == {"alembic_version"}
    migrate.upgrade(settings)
    assert {"users", "sessions", "integrations"} <= asyncio.run(_tables(url))


def test_0004_encrypts_the_secrets_it_finds_and_0003_gets_them_back(
    test_database: TestDatabase,
) -> None:
    """Secrets stored in clear before 0004 are sealed by it (the legacy admin token becomes
    credentials), and downgrading opens them again."""
    import asyncio

    name = f"astra_migrations_{uuid.uuid4().hex[:8]}"
    _create_database(test_database.owner_url, name)
    url = test_database.owner_url.set(database=name).render_as_string(hide_password=False)
    settings = test_database.settings.model_copy(update={"database_url": url})
    key = settings.encryption_key
    secret, previous, token = "s" * 43, "p" * 43, "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"

    async def run(sql: str, **params: object) -> list[dict[str, object]]:
        engine = create_async_engine(make_url(url).set(drivername="postgresql+asyncpg"))
        async with engine.begin() as connection:
            result = await connection.execute(text(sql), params)
            rows = [dict(row) for row in result.mappings()] if result.returns_rows else []
        await engine.dispose()
        return rows

    migrate.upgrade(settings, "0003")
    asyncio.run(
        run(
            "WITH u AS (INSERT INTO users (email, password_hash) VALUES ('a@example.com', 'x') "
            "RETURNING id) INSERT INTO integrations (user_id, name, type, domain, webhook_secret, "
            "previous_webhook_secret, previous_secret_expires_at, admin_access_token) "
            "SELECT id, 'Shop', 'shopify', 'shop.myshopify.com', :secret, :previous, now(), "
            ":token FROM u",
            secret=secret,
            previous=previous,
            token=encrypt(key, token),
        )
    )

    migrate.upgrade(settings, "0004")
    [sealed] = asyncio.run(run("SELECT * FROM integrations"))
    migrate.downgrade(settings, "0003")
    [opened] = asyncio.run(run("SELECT * FROM integrations"))

    assert secret not in str(sealed) and previous not in str(sealed) and token not in str(sealed)
    assert decrypt(key, str(sealed["webhook_secret"])) == secret
    assert decrypt(key, str(sealed["previous_webhook_secret"])) == previous
    assert sealed["credentials_kind"] == "shopify_token"
    assert json.loads(decrypt(key, str(sealed["credentials"]))) == {"access_token": token}
    assert "admin_access_token" not in sealed
    assert (opened["webhook_secret"], opened["previous_webhook_secret"]) == (secret, previous)
    assert decrypt(key, str(opened["admin_access_token"])) == token
