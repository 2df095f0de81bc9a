"""Alembic environment: runs migrations as the database owner over asyncpg."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from astra.db.tables import include_name, metadata

config = context.config


def _run(connection: Connection) -> None:
    # The schema the code reads and writes: `alembic revision --autogenerate` and
    # tests/db/test_schema.py compare the database with it (not the job queue's tables).
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(config.attributes["owner_url"])
    try:
        async with engine.connect() as connection:
            # One migrator at a time (`astra serve` and `astra worker` may start together):
            # a second waits here, then finds the database at head. Session-level, so it
            # holds across the migrations' own transactions until the connection closes.
            await connection.execute(text("SELECT pg_advisory_lock(7412006)"))
            await connection.commit()
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


asyncio.run(_main())
