"""The two hottest routes, `GET` and `POST /api/integrations`, answered without FastAPI's
routing and dependency solving, which cost more CPU than the routes' own work
(BENCHMARKS.md).

This is not a second implementation: it runs the routes' own steps (the session lookup,
the service call, the JSON the route builds, the app's error handlers) in one transaction
committed before the answer, as the `Db` dependency does. It sits inside every middleware
(request id, security headers, trusted hosts, body caps, the cross-site guard), so those
hold as for any route. It takes only requests whose input it can read without doubt: a
query of at most `limit` and `cursor` in their plain spelling, a JSON body that validates.
Anything else (an odd query, a body that fails validation, another content type) goes on to
the FastAPI routes themselves, which answer it as they always have, 422s included; the
OpenAPI document is theirs.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astra.auth import service as auth
from astra.auth.deps import SESSION_COOKIE
from astra.db.session import Database, begin
from astra.errors import NotAuthenticated
from astra.http import BodyTooLarge, handled_error
from astra.integrations import service
from astra.integrations.api import created_response, page_response, webhook_base
from astra.integrations.schemas import IntegrationCreate
from astra.settings import Settings

PATH = "/api/integrations"
# The list's query as clients send it; any other spelling is the FastAPI route's to read.
_LIMIT = re.compile(rb"[1-9][0-9]{0,2}")
_CURSOR = re.compile(rb"[A-Za-z0-9_-]{1,200}")
_MAX_LIMIT = 200
_DEFAULT_LIMIT = 50
_JSON = b"application/json"


def _page_query(query: bytes) -> tuple[int, str | None] | None:
    """(limit, cursor) from a plain query, or None for any other query."""
    limit, cursor = _DEFAULT_LIMIT, None
    if not query:
        return limit, cursor
    seen: set[bytes] = set()
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name in seen:
            return None
        seen.add(name)
        if name == b"limit" and _LIMIT.fullmatch(value) and int(value) <= _MAX_LIMIT:
            limit = int(value)
        elif name == b"cursor" and _CURSOR.fullmatch(value):
            cursor = value.decode("ascii")
        else:
            return None
    return limit, cursor


def _content_type(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value)
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then is the client's again."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class _Matched:
    """What is read of a matched route once it has answered (the request metrics label a
    request by `scope["route"].path`), as FastAPI's router leaves it in the scope."""

    path = PATH


_MATCHED = _Matched()


class HotIntegrationRoutes:
    """Pure ASGI: answers the two routes' ordinary requests itself, passes the rest on."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH:
            method = scope["method"]
            if method == "GET":
                page = _page_query(scope["query_string"])
                if page is not None:
                    scope["route"] = _MATCHED
                    await self._list(scope, receive, send, *page)
                    return
            elif method == "POST" and _content_type(scope) == _JSON:
                scope["route"] = _MATCHED
                await self._create(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _list(
        self, scope: Scope, receive: Receive, send: Send, limit: int, cursor: str | None
    ) -> None:
        request = Request(scope, receive)
        database: Database = scope["app"].state.db
        try:
            async with begin(database) as db:
                user = await auth.authenticate(db, request.cookies.get(SESSION_COOKIE))
                if user is None:
                    raise NotAuthenticated("Sign in to continue.")
                page = await service.list_integrations(db, user, limit=limit, cursor=cursor)
            response = page_response(page, webhook_base(request, self.settings))
        except Exception as exc:
            response = await _error(request, exc)
        await response(scope, receive, send)

    async def _create(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            body = await request.body()
        except (BodyTooLarge, ClientDisconnect) as exc:
            # The FastAPI route's own answer to a body that never came in whole.
            failed = exc

            async def failing() -> Message:
                raise failed

            await self.app(scope, failing, send)
            return
        data = _valid(body)
        if data is None:
            await self.app(scope, _replay(body, receive), send)
            return
        database: Database = scope["app"].state.db
        settings = self.settings
        try:
            async with begin(database) as db:
                user = await auth.authenticate(db, request.cookies.get(SESSION_COOKIE))
                if user is None:
                    raise NotAuthenticated("Sign in to continue.")
                row, secret = await service.create_integration(
                    db, user, data, encryption_key=settings.encryption_key
                )
            response = created_response(row, secret, webhook_base(request, settings))
        except Exception as exc:
            response = await _error(request, exc)
        await response(scope, receive, send)


def _valid(body: bytes) -> IntegrationCreate | None:
    """The body as the route's model, or None when the route should say what is wrong."""
    try:
        data: Any = orjson.loads(body)
        return IntegrationCreate.model_validate(data)
    except (orjson.JSONDecodeError, ValidationError):
        return None


async def _error(request: Request, exc: Exception) -> Response:
    response = await handled_error(request, exc)
    if response is None:
        raise exc
    return response
