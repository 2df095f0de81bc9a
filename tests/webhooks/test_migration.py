"""Migration 0002 is reversible: up, down to 0001 (everything it added gone), up again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from astra.db import migrate
from astra.db.urls import owner_url
from astra.settings import Settings
from tests.conftest import TestDatabase, _create_database

SCHEMA = """
SELECT
  (SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables
   WHERE schemaname = 'public') AS tables,
  (SELECT array_agg(column_name::text ORDER BY column_name) FROM information_schema.columns
   WHERE table_schema = 'public' AND table_name = 'integrations') AS integration_columns,
  (SELECT array_agg(conname::text ORDER BY conname) FROM pg_constraint
   WHERE conrelid = 'public.integrations'::regclass) AS integration_constraints,
  (SELECT count(*) FROM pg_proc WHERE proname = 'app_webhook_target') AS functions
"""


def _schema(settings: Settings) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        engine = create_async_engine(owner_url(settings))
        async with engine.connect() as connection:
            row = (await connection.execute(text(SCHEMA))).one()
        await engine.dispose()
        return dict(row._mapping)

    return asyncio.run(read())


async def _drop_database(test_database: TestDatabase, name: str) -> None:
    server = test_database.owner_url.set(database="postgres")
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


def test_0002_up_down_up(test_database: TestDatabase) -> None:
    name = f"astra_migration_0002_{uuid.uuid4().hex[:8]}"
    _create_database(test_database.owner_url, name)
    url = test_database.owner_url.set(database=name).render_as_string(hide_password=False)
    settings = test_database.settings.model_copy(update={"database_url": url})

    try:
        migrate.upgrade(settings, "0001")
        before = _schema(settings)
        migrate.upgrade(settings, "0002")
        after = _schema(settings)
        migrate.downgrade(settings, "0001")
        reverted = _schema(settings)
        # Back to 0002 itself: later migrations add tables of their own.
        migrate.upgrade(settings, "0002")
        again = _schema(settings)
    finally:
        asyncio.run(_drop_database(test_database, name))

    assert {"orders", "webhook_deliveries"} <= set(after["tables"])
    assert {"previous_webhook_secret", "previous_secret_expires_at"} <= set(
        after["integration_columns"]
    )
    assert after["functions"] == 1
    assert reverted == before
    assert again == after
