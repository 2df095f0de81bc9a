"""Current-user dependencies. Resolving the user also sets the transaction's RLS context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie

from astra.auth import service
from astra.auth.principal import Principal
from astra.db.session import Db

SESSION_COOKIE = "astra_session"
# Declared as a security scheme so the OpenAPI document says which routes need a session.
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    scheme_name="session",
    auto_error=False,
    description="The HttpOnly session cookie POST /api/auth/login sets.",
)


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


SessionToken = Annotated[str | None, Security(session_cookie)]


async def optional_user(db: Db, token: SessionToken) -> Principal | None:
    return await service.authenticate(db, token)


async def current_user(db: Db, token: SessionToken) -> Principal:
    # Not built on optional_user: one dependency less to resolve on every API request.
    return await service.require_user(db, token)


OptionalUser = Annotated[Principal | None, Depends(optional_user)]
CurrentUser = Annotated[Principal, Depends(current_user)]
