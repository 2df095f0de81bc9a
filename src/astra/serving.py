"""Serving: `astra serve`'s start-up (migrate, the first-run link, uvicorn with the
header cap and trusted proxies) and its exit (the embedded PostgreSQL it started stops
with it), and `astra db stop`. The CLI's commands call these; nothing else imports them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from astra.db import migrate
from astra.db.embedded import embedded_running, stop_embedded
from astra.db.urls import owner_url
from astra.logs import LOG_CONFIG
from astra.settings import WILDCARD_HOSTS, Settings

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# prometheus_client's multiprocess mode (astra.metrics reads the same name; imported here
# before prometheus_client would be, which must see it set first).
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _owner_count(settings: Settings, query: str) -> int:
    """One count, asked as the database's owner."""

    async def count() -> int:
        engine = create_async_engine(owner_url(settings))
        try:
            async with engine.connect() as connection:
                return int((await connection.execute(text(query))).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def _user_count(settings: Settings) -> int:
    return _owner_count(settings, "SELECT public.app_user_count()")


# Sessions on the server other than the one asking.
OTHER_CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


def stop_database(settings: Settings) -> int:
    if settings.database_url is not None:
        print("error: DATABASE_URL is set: there is no embedded PostgreSQL.", file=sys.stderr)
        return 1
    if not embedded_running(settings.data_dir):
        print("The embedded PostgreSQL is not running.")
        return 0
    stop_embedded(settings.data_dir)
    print("Stopped the embedded PostgreSQL.")
    return 0


def _leave_embedded(settings: Settings, *, started_here: bool) -> None:
    """After serving: stop the embedded PostgreSQL if this command started it and nobody
    else is connected; otherwise leave it running and say how to stop it."""
    if not embedded_running(settings.data_dir):
        return
    # As this command was invoked (.venv/bin/astra after `make run`).
    program = sys.argv[0] if os.path.basename(sys.argv[0]) == "astra" else "astra"
    stop_command = f"{program} db stop"
    if not started_here:
        print(
            "The embedded PostgreSQL was already running before astra serve, so it keeps "
            f"running. Stop it with: {stop_command}",
            flush=True,
        )
        return
    # Our workers have just closed their pools; their sessions end a moment later.
    deadline = time.monotonic() + 3
    while (others := _owner_count(settings, OTHER_CONNECTIONS)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if others:
        print(
            f"The embedded PostgreSQL keeps running: {others} other connection(s) use it. "
            f"Stop it when they are done with: {stop_command}",
            flush=True,
        )
        return
    stop_embedded(settings.data_dir)
    print("Stopped the embedded PostgreSQL.", flush=True)


# CappedHttpTools' answer to a head over the cap, written straight to the socket.
_HEAD_TOO_LARGE_BODY = b'{"detail":"The request\'s headers are too large."}'
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(_HEAD_TOO_LARGE_BODY), _HEAD_TOO_LARGE_BODY)
)
# How long a refused connection stays open, unread, so its answer gets through.
LINGER_SECONDS = 1.0
# How much of a refused body is read and dropped before hanging up.
DROPPED_BODY_LIMIT = 1024 * 1024


class CappedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with two caps uvicorn lacks.

    A request's head (request line and headers) over the h11_max_incomplete_event_size
    setting is answered 431. httptools buffers a head without limit, copying it again as it
    grows: one 150 MB header held the event loop, and every other request, for 25 s.
    uvicorn's h11 protocol has that cap but answers 400 and parses more slowly. The count
    is checked after each read is parsed, so a head and the start of its body arriving
    together are never taken for a long head.

    A body answered before it was all in (413: the app refused it from its length) is read
    and dropped, so the answer reaches the client intact, but at most DROPPED_BODY_LIMIT
    bytes of it: then the connection is closed.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert config.h11_max_incomplete_event_size is not None
        self.head_limit: int = config.h11_max_incomplete_event_size
        self.in_head = True
        self.head_bytes = 0
        self.dropped_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.in_head and self.head_bytes > self.head_limit and not self.transport.is_closing():
            self._refuse_head()

    def _refuse_head(self) -> None:
        logger.warning("request refused: headers too large", extra={"bytes": self.head_bytes})
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request's head, while the previous answer is still going out:
            # no room for a second answer on the wire.
            self.transport.close()
            return
        self.transport.write(HEAD_TOO_LARGE)
        self.transport.write_eof()
        self._hang_up_soon()

    def _hang_up_soon(self) -> None:
        """Stop reading, close in a moment. Closing at once with the client's bytes unread
        resets the connection, and a client still sending loses the answer it has not
        read yet; paused, its sends stall instead while it reads the answer."""
        if self.transport.is_reading():
            self.transport.pause_reading()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def on_headers_complete(self) -> None:
        self.in_head, self.head_bytes, self.dropped_bytes = False, 0, 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.cycle.response_complete:
            self.dropped_bytes += len(body)
            if self.dropped_bytes > DROPPED_BODY_LIMIT:
                self._hang_up_soon()
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True


def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    *,
    worker: bool,
    metrics_port: int | None = None,
) -> int:
    embedded = settings.database_url is None
    started_here = embedded and not embedded_running(settings.data_dir)
    metrics_port = metrics_port or settings.metrics_port
    try:
        with _metrics_dir(), _metrics_server(settings, metrics_port):
            return _migrate_and_serve(settings, host, port, workers, worker=worker)
    except (MetricsPortUnavailable, MetricsDirUnsafe) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded:
            _leave_embedded(settings, started_here=started_here)


class MetricsPortUnavailable(Exception):
    pass


class MetricsDirUnsafe(Exception):
    pass


# The files prometheus_client's multiprocess mode writes: `{kind}_{pid}.db`.
_SAMPLES_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


@contextmanager
def _metrics_dir() -> Iterator[None]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for this run, set before any worker imports
    prometheus_client: every worker writes its samples there, a scrape adds them up, and
    nothing is left of an earlier run. One the operator set is emptied instead of made."""
    given = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if given:
        path = Path(given)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Whoever else may write there could plant a link where a worker's samples file
        # goes (the worker writes through it) or samples of their own.
        found = path.stat()
        if found.st_uid != os.geteuid() or found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise MetricsDirUnsafe(
                f"{MULTIPROC_DIR_VARIABLE} {path} may be written to by another user: give "
                "a directory of this user's that only it may write to (or leave it unset)."
            )
        # An earlier run's samples files only, not whatever else is kept there.
        for stale in path.iterdir():
            if _SAMPLES_FILE.fullmatch(stale.name):
                stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="astra-metrics-"))
        os.environ[MULTIPROC_DIR_VARIABLE] = str(path)
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(path, ignore_errors=True)
            os.environ.pop(MULTIPROC_DIR_VARIABLE, None)


@contextmanager
def _metrics_server(settings: Settings, port: int | None) -> Iterator[None]:
    """/metrics on 127.0.0.1:port, in a thread of this (the supervising) process, for as
    long as the block runs; nothing without a port."""
    if port is None:
        yield
        return
    from astra.ops import metrics_app

    config = uvicorn.Config(
        metrics_app(settings),
        host=LOOPBACK,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    # Bound here, so a port in use stops `astra serve` at once rather than a thread alone.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((LOOPBACK, port))
    except OSError as exc:
        listener.close()
        raise MetricsPortUnavailable(
            f"cannot serve metrics on {LOOPBACK}:{port}: {exc.strerror}"
        ) from None
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="metrics server", daemon=True
    )
    thread.start()
    print(f"  Metrics on http://{LOOPBACK}:{port}/metrics", flush=True)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        listener.close()


def _migrate_and_serve(
    settings: Settings, host: str, port: int, workers: int, *, worker: bool
) -> int:
    migrate.upgrade(settings)
    # The workers read their settings from the environment: the address served on is
    # one of the Host names answered (Settings.trusted_hosts).
    os.environ["ASTRA_HOST"] = host
    if settings.public_url is None and settings.allowed_hosts is None and host in WILDCARD_HOSTS:
        print(
            "  Answering only requests for localhost and 127.0.0.1: set ASTRA_PUBLIC_URL "
            "(or ASTRA_ALLOWED_HOSTS) to the address clients use.",
            flush=True,
        )
    if _user_count(settings) == 0:
        # Like Jupyter's token link: only whoever sees this terminal can claim the first admin.
        token = secrets.token_urlsafe(24)
        os.environ["ASTRA_SETUP_TOKEN"] = token
        base = settings.public_url or f"http://{host}:{port}"
        print(
            "\n  No accounts yet. Create the first admin account here:\n"
            f"    {base.rstrip('/')}/setup?token={token}\n",
            flush=True,
        )
    # Read by the app's lifespan in every uvicorn process: one queue worker each.
    os.environ["ASTRA_IN_PROCESS_WORKER"] = "1" if worker else "0"
    # uvicorn, having shut down on a signal, raises it again: with a handler of ours that
    # does nothing, a graceful stop ends here and exits 0 (the supervisor of several
    # workers exits 0 by itself).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stopped)
    uvicorn.run(
        "astra.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=CappedHttpTools,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # Client address and scheme from X-Forwarded-For/-Proto only when a configured
        # proxy sent them; uvicorn's default would believe anyone on 127.0.0.1.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies,
        server_header=False,
        log_config=LOG_CONFIG,
        access_log=False,
        # On SIGTERM: stop accepting, let in-flight requests finish for this long, then the
        # lifespan's end hands running jobs back (Settings.job_shutdown_seconds).
        timeout_graceful_shutdown=settings.http_shutdown_seconds,
    )
    return 0


def _stopped(signum: int, frame: FrameType | None) -> None:
    """uvicorn's shutdown is done; nothing is left to do for the signal."""
