"""Alembic environment: runs migrations as the database owner over asyncpg."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from astra.db.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    # The schema the code reads and writes: `alembic revision --autogenerate` and
    # tests/db/test_schema.py compare the database with it.
    context.configure(
        connection=connection, target_metadata=metadata, transaction_per_migration=True
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(config.attributes["owner_url"])
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


asyncio.run(_main())
