"""Migrations are reversible: up, down to nothing, and up again on a fresh database."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

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
