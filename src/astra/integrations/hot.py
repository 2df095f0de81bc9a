"""The two hottest routes, `GET` and `POST /api/integrations`, answered without FastAPI's
routing and dependency solving, which cost more CPU than the routes' own work
(BENCHMARKS.md), through `astra.http.HotRoutes`.

This is not a second implementation: it runs the routes' own steps (the session lookup,
the service call, the JSON the route builds) in one transaction committed before the
answer, as the `Db` dependency does. It takes only requests whose input it can read without
doubt: a query of at most `limit` and `cursor` in their plain spelling, a JSON body that
validates. Anything else (an odd query, a body that fails validation, another content type)
goes on to the FastAPI routes themselves, which answer it as they always have, 422s
included.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from astra.auth import service as auth
from astra.auth.deps import SESSION_COOKIE
from astra.db.session import Database, begin
from astra.http import HotRoute
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


def _json_body(scope: Scope) -> bool | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return True if value == _JSON else None
    return None


def hot_routes(settings: Settings) -> tuple[HotRoute, HotRoute]:
    """The list and create, for `HotRoutes`."""

    async def list_page(request: Request, page: tuple[int, str | None]) -> Response:
        limit, cursor = page
        database: Database = request.app.state.db
        async with begin(database) as db:
            user = await auth.require_user(db, request.cookies.get(SESSION_COOKIE))
            rows = await service.list_integrations(db, user, limit=limit, cursor=cursor)
        return page_response(rows, webhook_base(request, settings))

    async def create(request: Request, _: bool) -> Response | None:
        data = _valid(await request.body())
        if data is None:
            return None
        database: Database = request.app.state.db
        async with begin(database) as db:
            user = await auth.require_user(db, request.cookies.get(SESSION_COOKIE))
            row, secret = await service.create_integration(
                db, user, data, encryption_key=settings.encryption_key
            )
        return created_response(row, secret, webhook_base(request, settings))

    return (
        HotRoute("GET", PATH, accept=_page_query_of, answer=list_page),
        HotRoute("POST", PATH, accept=_json_body, answer=create),
    )


def _page_query_of(scope: Scope) -> tuple[int, str | None] | None:
    return _page_query(scope["query_string"])


def _valid(body: bytes) -> IntegrationCreate | None:
    """The body as the route's model, or None when the route should say what is wrong."""
    try:
        data: Any = orjson.loads(body)
        return IntegrationCreate.model_validate(data)
    except (orjson.JSONDecodeError, ValidationError):
        return None
