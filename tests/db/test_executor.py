"""The executor (astra.db.session) on the runtime role: results as the call sites read them,
statements compiled once, SQLAlchemy's DB-API errors with no bound value in them, and a
pool that lends connections only when a statement needs one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import ArgumentError, DBAPIError, MultipleResultsFound

from astra.db import session
from astra.db.session import Database, begin
from astra.db.tables import integrations, users
from astra.db.urls import app_url
from tests.conftest import TestDatabase


@pytest.fixture
async def database(test_database: TestDatabase) -> AsyncIterator[Database]:
    db = Database(app_url(test_database.settings), pool_size=1, max_overflow=1)
    yield db
    await db.dispose()


async def test_results_read_as_sqlalchemys_did(database: Database) -> None:
    async with begin(database) as db:
        result = await db.execute(text("SELECT n, n * 2 AS twice FROM generate_series(1, 3) n"))
        assert [tuple(row) for row in result] == [(1, 2), (2, 4), (3, 6)]
        first = result.first()
        assert first is not None
        assert (first.n, first.twice, first[1]) == (1, 2, 2)
        assert first._mapping == first._asdict() == {"n": 1, "twice": 2}
        assert result.scalars().all() == [1, 2, 3]
        assert result.mappings().first() == {"n": 1, "twice": 2}
        with pytest.raises(MultipleResultsFound):
            result.one()
        one = await db.execute(text("SELECT CAST(:v AS int) AS v"), {"v": 7})
        assert (one.scalar_one(), one.one().v) == (7, 7)
        assert (await db.execute(text("SELECT 1 WHERE false"))).one_or_none() is None


async def test_a_statement_is_compiled_once_and_forgotten_with_it(database: Database) -> None:
    statement = select(users.c.id).where(users.c.id == bindparam("id"))
    async with begin(database) as db:
        await db.execute(statement, {"id": uuid.uuid4()})
        compiled = session._STATEMENTS.get(statement, {"id": None}, False)
        await db.execute(statement, {"id": uuid.uuid4()})
        assert session._STATEMENTS.get(statement, {"id": None}, False) is compiled
    entries = len(session._STATEMENTS._by_id)
    del statement, compiled
    assert len(session._STATEMENTS._by_id) == entries - 1


async def test_values_a_statement_holds_are_its_own(database: Database) -> None:
    """A statement built per call with literal values runs with those values, not with an
    earlier statement's of the same shape."""
    async with begin(database) as db:
        for n in (1, 2):
            statement = select(text("1")).where(integrations.c.name == f"shop {n}")
            assert "shop" not in session._STATEMENTS.get(statement, None, False).sql
            assert session._STATEMENTS.get(statement, None, False).defaults == (f"shop {n}",)
            assert (await db.execute(statement)).all() == []


async def test_updates_count_their_rows(database: Database) -> None:
    async with begin(database) as db:
        # As the runtime role acting as nobody, RLS shows no rows to change.
        result = await db.execute(update(integrations).values(name="x"))
        assert result.rowcount == 0


async def test_errors_are_sqlalchemys_and_quote_no_bound_value(database: Database) -> None:
    secret = "s3cr3t-value-never-in-errors"
    with pytest.raises(DBAPIError) as raised:
        async with begin(database) as db:
            await db.execute(text("SELECT CAST(:v AS text) FROM no_such_table"), {"v": secret})
    assert getattr(raised.value.orig, "sqlstate", None) == "42P01"
    assert raised.value.orig is not None
    assert raised.value.orig.__cause__ is not None  # the driver's own error
    assert secret not in str(raised.value)
    # The pool lends the connection again: the failed transaction was rolled back.
    async with begin(database) as db:
        assert (await db.execute(text("SELECT 1"))).scalar_one() == 1


async def test_expanding_in_lists_are_refused_for_any(database: Database) -> None:
    statement = select(users.c.id).where(users.c.id.in_(bindparam("ids", expanding=True)))
    async with begin(database) as db:
        with pytest.raises(ArgumentError, match="ANY"):
            await db.execute(statement, {"ids": [uuid.uuid4()]})


async def test_connections_are_lent_by_the_first_statement_and_overflow_is_closed(
    database: Database,
) -> None:
    assert database.pool_stats().in_use == 0
    async with begin(database) as one, begin(database) as two:
        assert database.pool_stats().in_use == 0
        await one.execute(text("SELECT 1"))
        await two.execute(text("SELECT 1"))
        stats = database.pool_stats()
        assert (stats.in_use, stats.size, stats.max_size) == (2, 2, 2)
    # One is kept idle (pool_size), the overflow one closed.
    stats = database.pool_stats()
    assert (stats.in_use, stats.size) == (0, 1)
