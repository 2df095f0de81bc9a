"""HTTP plumbing shared by every router: error bodies, their OpenAPI entries, middleware."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, HTTPConnection
from starlette.requests import Request as StarletteRequest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astra.errors import OUTAGE_RETRY_SECONDS, AstraError, InvalidInput
from astra.settings import Settings

logger = logging.getLogger(__name__)

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Not signed in",
    403: "Not allowed",
    404: "No such record",
    409: "Conflicts with an existing record",
    413: "Body too large",
    422: "Invalid input",
    429: "Too many attempts; retry after the Retry-After seconds",
    503: "The database is unavailable; retry after the Retry-After seconds",
}
DATABASE_DOWN = "The database is unavailable right now. Try again in a few seconds."
TOO_LARGE = "The body is larger than this endpoint accepts."


class FastJSONResponse(Response):
    """JSON through orjson, for hot routes that build plain dicts instead of models (the
    route's response_model still documents the shape). Datetimes end in Z, as Pydantic's."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # asyncpg's UUID subclass is not one orjson takes natively; str() is its canonical form.
        return orjson.dumps(content, option=orjson.OPT_UTC_Z, default=str)


class ErrorBody(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    detail: list[FieldError]


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


async def _settings(request: Request) -> Settings:
    # async: FastAPI runs a plain `def` dependency in a worker thread, a hop that cost the
    # webhook path a quarter of its CPU (BENCHMARKS.md).
    settings: Settings = request.app.state.settings
    return settings


# The app's settings, for the routes that read one.
SettingsDep = Annotated[Settings, Depends(_settings)]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can return."""
    return {
        code: {
            "model": ValidationErrorBody if code == 422 else ErrorBody,
            "description": _DESCRIPTIONS[code],
            **({"headers": _RETRY_AFTER} if code in (429, 503) else {}),
        }
        for code in statuses
    }


async def _astra_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AstraError)
    if isinstance(exc, InvalidInput):
        # Same shape as Pydantic's errors (one shape for every 422), so a form can show it
        # next to its field.
        loc = [exc.location, exc.field]
        body: Any = [{"loc": loc, "msg": exc.detail, "type": "value_error"}]
        return JSONResponse({"detail": body}, status_code=exc.status_code)
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    content = {"detail": exc.detail} | exc.extra
    return JSONResponse(content, status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


# SQLSTATEs of a server that cannot serve anyone right now: class 08 (connection exception),
# 57P* (shutting down, crashed, still starting up, ...), 53300 (too many connections).
_OUTAGE_SQLSTATES = ("08", "57P", "53300")


def _is_outage(exc: Exception) -> bool:
    """Connection-level failures: the database is down, restarting or out of connections."""
    if isinstance(exc, sa_exc.DBAPIError):
        # A refusal while connecting ("the database system is shutting down", "... is
        # starting up") comes as a plain DBAPIError that invalidated nothing, there being no
        # connection yet: only its SQLSTATE tells it from a bug, and it must be a 503.
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        return (
            exc.connection_invalidated
            or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
            or sqlstate.startswith(_OUTAGE_SQLSTATES)
        )
    return isinstance(exc, (OSError, sa_exc.TimeoutError))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """Never a traceback or database text for the client: 503 when the database is
    unreachable (clients and stores retry), a plain 500 otherwise."""
    if _is_outage(exc):
        logger.warning("database unavailable", extra={"error": type(exc).__name__})
        return JSONResponse(
            {"detail": DATABASE_DOWN},
            status_code=503,
            headers={"Retry-After": str(OUTAGE_RETRY_SECONDS)},
        )
    # The engine hides bound parameters, so the traceback carries no secrets.
    logger.error("database error", extra={"error": type(exc).__name__}, exc_info=exc)
    return JSONResponse({"detail": "Something went wrong on our side."}, status_code=500)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its body was in: nothing to answer and nothing broken, so
    one line instead of a traceback."""
    logger.info("client disconnected before sending the whole body")
    return Response(status_code=400)


async def handled_error(request: Request, exc: Exception) -> Response | None:
    """The answer the handlers installed below give `exc` (None: not one of theirs), for
    code that answers outside FastAPI's routing (HotRoutes)."""
    if isinstance(exc, AstraError):
        return await _astra_error(request, exc)
    if isinstance(exc, (sa_exc.SQLAlchemyError, OSError)):
        return await _database_error(request, exc)
    return None


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AstraError, _astra_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(sa_exc.SQLAlchemyError, _database_error)
    app.add_exception_handler(OSError, _database_error)


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CrossSiteGuard:
    """Refuse state-changing requests that carry our cookie but come from another site.

    Browsers say where a request comes from (Sec-Fetch-Site, else Origin); clients that
    are not browsers send neither and carry no ambient credentials to abuse.
    """

    def __init__(self, app: ASGIApp, *, cookie_name: str, exempt_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.cookie_name = cookie_name
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in UNSAFE_METHODS
            and self._cross_site(scope)
        ):
            response = JSONResponse({"detail": "Cross-site request refused."}, status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _cross_site(self, scope: Scope) -> bool:
        if scope["path"].startswith(self.exempt_prefixes):
            return False
        # The cookies exactly as the session reader (Starlette's Request) sees them, so no
        # spelling it accepts (a repeated Cookie header, a space after the name) slips past.
        connection = HTTPConnection(scope)
        if self.cookie_name not in connection.cookies:
            return False
        headers = connection.headers
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None:
            return fetch_site not in ("same-origin", "none")
        origin = headers.get("origin")
        if origin is None:
            return False
        return urlsplit(origin).netloc != headers.get("host", "")


def _header(scope: Scope, name: bytes) -> str:
    """The first value of the header `name` (lowercase), as Starlette's `Headers` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


# An allowed name the shortcut below may compare as bytes: plain DNS or IPv4 characters.
_PLAIN_NAME = re.compile(r"[a-z0-9.-]+")


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's Host check, with one shortcut: a Host header that is an allowed name as
    written (lowercase, no wildcard), alone or with a numeric port, goes in without being
    parsed. Every other header, refusals included, goes through Starlette's check itself."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str], www_redirect: bool) -> None:
        super().__init__(app, allowed_hosts=allowed_hosts, www_redirect=www_redirect)
        self.exact = frozenset(
            name.encode("ascii") for name in self.allowed_hosts if _PLAIN_NAME.fullmatch(name)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._plainly_allowed(scope):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _plainly_allowed(self, scope: Scope) -> bool:
        for key, value in scope["headers"]:
            if key == b"host":
                name, colon, port = bytes(value).partition(b":")
                return name in self.exact and (not colon or (port.isdigit() and port.isascii()))
        return False


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes its cap. An HTTPException, so
    FastAPI's body parsing passes it on as it is (anything else there becomes a 400)."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail=TOO_LARGE)


class BodyLimit:
    """Cap every request body: 413 at once when Content-Length says it is over the cap,
    else as soon as the bytes streamed in (a chunked body has no length) pass it. Paths
    under a prefix of `prefix_limits` have that prefix's cap instead.

    `astra serve` then drops the rest of the body (see astra.cli.CappedHttpTools).
    """

    def __init__(self, app: ASGIApp, *, limit: int, prefix_limits: dict[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.prefix_limits = prefix_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit
        for prefix, cap in self.prefix_limits.items():
            if path.startswith(prefix):
                limit = cap
                break
        declared = _header(scope, b"content-length")
        # At most 19 digits go to int(): enough for any cap, and cheap however long the header.
        if declared.isascii() and declared.isdigit() and int(declared[:19]) > limit:
            response = JSONResponse({"detail": TOO_LARGE}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        await self.app(scope, capped_receive, send)


@dataclass(frozen=True, slots=True)
class HotRoute:
    """A route's ordinary requests, answered by `HotRoutes` without FastAPI's routing.

    `accept` reads the scope (query, headers) and returns what `answer` needs, or None for
    a request the FastAPI route should read itself. `answer` returns the response, or None
    to hand the request (its body, if read) to the FastAPI route after all. `path` is the
    route's template, which the request metrics read as they read a matched route's.
    """

    method: str
    path: str
    accept: Callable[[Scope], Any]
    answer: Callable[[StarletteRequest, Any], Awaitable[Response | None]]


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


def _failing(exc: Exception) -> Receive:
    async def failing() -> Message:
        raise exc

    return failing


class HotRoutes:
    """Pure ASGI, innermost: answers the hot routes' ordinary requests itself, passes the
    rest on to FastAPI.

    Not second implementations: a hot route's `answer` runs the route's own steps, and its
    errors get the app's own handlers (`handled_error`). Sitting inside every middleware
    (request id, security headers, trusted hosts, body caps, the cross-site guard), it
    leaves those to hold as for any route. A body that never came in whole (over its cap
    while streaming, the client gone) is the FastAPI route's to answer, as it always has;
    so is whatever `accept` or `answer` turn down, and the OpenAPI document is theirs.
    """

    def __init__(self, app: ASGIApp, *, routes: Iterable[HotRoute]) -> None:
        self.app = app
        self.routes = {(route.method, route.path): route for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], scope["path"]))
            if route is not None:
                accepted = route.accept(scope)
                if accepted is not None:
                    scope["route"] = route
                    await self._answer(route, accepted, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self, route: HotRoute, accepted: Any, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = StarletteRequest(scope, receive)
        body = b""
        try:
            response = await route.answer(request, accepted)
            # Turned down: the body as read (or read now), for the route to read again.
            if response is None:
                body = await request.body()
        except (BodyTooLarge, ClientDisconnect) as exc:
            await self.app(scope, _failing(exc), send)
            return
        except Exception as exc:
            response = await handled_error(request, exc)
            if response is None:
                raise
        if response is None:
            await self.app(scope, _replay(body, receive), send)
            return
        await response(scope, receive, send)
