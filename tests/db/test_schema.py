"""The tables module and the migrated database describe the same schema (Alembic's own
autogenerate comparison), so a change made only in a migration or only in the code fails."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, Text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.tables import metadata


def _differences(connection: Connection, target: Any) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, target))


async def _compare(owner_engine: AsyncEngine, target: Any) -> list[Any]:
    async with owner_engine.connect() as connection:
        return await connection.run_sync(_differences, target)


def _ignored(diff: Any) -> bool:
    # Alembic's own bookkeeping table is not part of the schema.
    return diff[0] == "remove_table" and diff[1].name == "alembic_version"


async def test_migrated_database_matches_the_tables_module(owner_engine: AsyncEngine) -> None:
    differences = [d for d in await _compare(owner_engine, metadata) if not _ignored(d)]
    assert differences == []


async def test_a_column_only_in_the_code_is_a_difference(owner_engine: AsyncEngine) -> None:
    """The comparison can fail: a column the migrations never made shows up."""
    drifted = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["users"].append_column(Column("nickname", Text))
    differences = [d for d in await _compare(owner_engine, drifted) if not _ignored(d)]
    assert [(d[0], d[3].name) for d in differences] == [("add_column", "nickname")]
