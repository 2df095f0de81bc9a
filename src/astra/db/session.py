"""The runtime engine and the one-transaction-per-request dependency.

Every request runs in exactly one transaction. The acting user is set inside it with
`set_config(..., true)`, so the setting dies with the transaction and a pooled connection
never carries one request's user into the next.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SET_CLAIMS = text("SELECT set_config('request.jwt.claims', :claims, true)")


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

    async def dispose(self) -> None:
        await self.engine.dispose()


async def set_acting_user(db: AsyncConnection, user_id: uuid.UUID) -> None:
    """Act as `user_id` for the rest of this transaction (bind parameter, never formatted)."""
    claims = json.dumps({"sub": str(user_id), "role": "authenticated"})
    await db.execute(SET_CLAIMS, {"claims": claims})


async def transaction(request: Request) -> AsyncIterator[AsyncConnection]:
    """Commit when the route succeeds, roll back when it raises.

    Used with scope="function": the commit finishes before the response is sent, so a
    2xx always means the work is durable, and a failed commit is an error, not a 2xx.
    """
    database: Database = request.app.state.db
    async with database.engine.begin() as connection:
        yield connection


# A Core connection, not an ORM session: every query here is a Core statement returning
# plain rows, and the session's unit-of-work layer cost a sixth of a list request's CPU.
Db = Annotated[AsyncConnection, Depends(transaction, scope="function")]
