"""Current-user dependencies. Resolving the user also sets the transaction's RLS context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from astra.auth import service
from astra.auth.principal import Principal
from astra.db.session import DbSession
from astra.errors import NotAuthenticated

SESSION_COOKIE = "astra_session"


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


async def optional_user(request: Request, session: DbSession) -> Principal | None:
    return await service.authenticate(session, session_token(request))


async def current_user(
    user: Annotated[Principal | None, Depends(optional_user)],
) -> Principal:
    if user is None:
        raise NotAuthenticated("Sign in to continue.")
    return user


OptionalUser = Annotated[Principal | None, Depends(optional_user)]
CurrentUser = Annotated[Principal, Depends(current_user)]
