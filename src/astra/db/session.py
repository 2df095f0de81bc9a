"""The runtime engine and the one-transaction-per-request dependency.

Every request runs in exactly one transaction. The acting user is set inside it by the SQL
function `app_act_as(uuid)` (transaction-local `set_config`), so the setting dies with the
transaction and a pooled connection never carries one request's user into the next. The
session lookup (`app_authenticate`) and the webhook's target lookup call that function in
their own round trip; everything else acts through `act_as` below.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import CursorResult, Executable, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

ACT_AS = text("SELECT public.app_act_as(:user_id)")


@dataclass(frozen=True, slots=True)
class PoolStats:
    size: int  # connections the pool keeps open
    in_use: int  # of them, lent out right now


class Database:
    def __init__(self, url: URL, *, pool_size: int = 10, max_overflow: int = 10) -> None:
        connect_args: dict[str, int] = {}
        if url.query.get("prepared_statement_cache_size") == "0":
            # Behind a transaction pooler (see `app_url`): asyncpg's own cache off as well,
            # so every statement is unnamed and parsed in the transaction that runs it.
            connect_args["statement_cache_size"] = 0
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_args=connect_args,
            # No pre-ping round trip per request: a connection that died with the server
            # fails its request once (503) and SQLAlchemy then renews the whole pool.
            # Error messages would otherwise quote bound values, secrets included.
            hide_parameters=True,
        )

    def pool_stats(self) -> PoolStats:
        pool = self.engine.pool
        if not isinstance(pool, QueuePool):
            return PoolStats(size=0, in_use=0)
        return PoolStats(size=pool.size(), in_use=pool.checkedout())

    async def dispose(self) -> None:
        await self.engine.dispose()


class Transaction:
    """The request's transaction on a Core connection, begun by its first statement.

    A request refused before any SQL (no session cookie, a malformed id, a webhook body
    still streaming in) holds no pooled connection. Core, not an ORM session: every query
    here is a Core statement returning plain rows, and the session's unit-of-work layer
    was a measurable share of a list request's CPU (BENCHMARKS.md).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None

    async def execute(
        self,
        statement: Executable,
        parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> CursorResult[*tuple[Any, ...]]:
        if self._connection is None:
            connection = await self._engine.connect()
            try:
                await connection.begin()
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
        return await self._connection.execute(statement, parameters)

    async def end(self, *, commit: bool) -> None:
        """Commit or roll back, and return the connection to the pool (if one was taken)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if commit:
                await connection.commit()
            else:
                await connection.rollback()
        finally:
            await connection.close()


async def act_as(db: Transaction, user_id: uuid.UUID) -> None:
    """Act as `user_id` for the rest of this transaction (bind parameter, never formatted)."""
    await db.execute(ACT_AS, {"user_id": user_id})


@asynccontextmanager
async def begin(database: Database) -> AsyncIterator[Transaction]:
    """A transaction on `database`, a request's (through `transaction`) or a job's:
    committed when the block ends, rolled back when it raises or is cancelled."""
    db = Transaction(database.engine)
    try:
        yield db
    except BaseException:
        await db.end(commit=False)
        raise
    await db.end(commit=True)


async def transaction(request: Request) -> AsyncIterator[Transaction]:
    """Commit when the route succeeds, roll back when it raises.

    Used with scope="function": the commit finishes before the response is sent, so a
    2xx always means the work is durable, and a failed commit is an error, not a 2xx.
    """
    async with begin(request.app.state.db) as db:
        yield db


Db = Annotated[Transaction, Depends(transaction, scope="function")]
