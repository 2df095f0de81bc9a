"""The tables module and the migrated database describe the same schema (Alembic's own
autogenerate comparison), so a change made only in a migration or only in the code fails."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, Text, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.tables import include_name, metadata


def _differences(connection: Connection, target: Any) -> list[Any]:
    # The same filter as migrations/env.py: the job queue's tables are procrastinate's.
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": include_name}
    )
    return list(compare_metadata(context, target))


async def _compare(owner_engine: AsyncEngine, target: Any) -> list[Any]:
    async with owner_engine.connect() as connection:
        return await connection.run_sync(_differences, target)


async def test_migrated_database_matches_the_tables_module(owner_engine: AsyncEngine) -> None:
    differences = await _compare(owner_engine, metadata)
    assert differences == []


async def test_a_column_only_in_the_code_is_a_difference(owner_engine: AsyncEngine) -> None:
    """The comparison can fail: a column the migrations never made shows up."""
    drifted = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["users"].append_column(Column("nickname", Text))
    differences = await _compare(owner_engine, drifted)
    assert [(d[0], d[3].name) for d in differences] == [("add_column", "nickname")]


async def test_only_the_job_queue_is_left_out(owner_engine: AsyncEngine) -> None:
    """The filter is narrow: a table neither the module nor procrastinate made shows up."""
    async with owner_engine.connect() as connection:
        await connection.execute(text("CREATE TABLE public.stray (id integer)"))
        try:
            differences = await connection.run_sync(_differences, metadata)
        finally:
            await connection.rollback()
    assert [(d[0], d[1].name) for d in differences] == [("remove_table", "stray")]
