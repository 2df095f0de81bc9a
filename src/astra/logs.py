"""Structured JSON logs with a request id on every line of a request.

Logged: method, path, status, duration, ids, topics, sizes, outcomes. Never logged:
query strings, headers, bodies, secrets or passwords.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_logger = logging.getLogger("astra.access")
REQUEST_ID_HEADER = b"x-request-id"
# The attributes every LogRecord has; anything else was passed in `extra=` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Stamp the current request's id on each record when it is created, wherever it goes."""
    record = _base_factory(*args, **kwargs)
    rid = request_id.get()
    if rid is not None:
        record.request_id = rid
    return record


logging.setLogRecordFactory(_record_with_request_id)


class _WithoutResultRows(logging.Filter):
    """SQLAlchemy at DEBUG logs every result row, secrets included (the engine's
    hide_parameters covers only bound parameters): statements still log, rows never."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Row %r"


logging.getLogger("sqlalchemy.engine.Engine").addFilter(_WithoutResultRows())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.error": {"handlers": [], "propagate": True},
        # Our access log replaces uvicorn's, which would print the query string.
        "uvicorn.access": {"handlers": [], "propagate": False},
    },
}


class _RequestIds:
    """Fresh ids from the OS's random source, read a few hundred at a time (one read a
    request was a system call each); a forked child reads its own."""

    SIZE = 8
    BATCH = 512

    def __init__(self) -> None:
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._random = b""
        self._at = 0

    def new(self) -> str:
        if self._at >= len(self._random):
            self._random, self._at = os.urandom(self.SIZE * self.BATCH), 0
        at = self._at
        self._at = at + self.SIZE
        return self._random[at : at + self.SIZE].hex()


_new_id = _RequestIds().new


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate: str = value.decode("latin-1")
            # Accept a caller's id only if it is short and plain, so it is safe to log.
            if 0 < len(candidate) <= 64 and candidate.replace("-", "").isalnum():
                return candidate
    return None


class RequestLogMiddleware:
    """Gives each request an id (kept from X-Request-ID when sane), returns it in the
    response header, and writes one access line when the response starts."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or _new_id()
        token = request_id.set(rid)
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, rid.encode()),
                ]
                if self.access_log:
                    access_logger.info(
                        "request",
                        extra={
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": message["status"],
                            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        },
                    )
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
