"""Prometheus metrics: what each process counts, and the text a scrape gets.

`astra serve` gives every run a fresh PROMETHEUS_MULTIPROC_DIR before any worker imports
prometheus_client (astra.serving): each uvicorn worker then writes its samples to its own
files there, and a scrape, answered by any one process, adds them all up. Without it (an
app built in a test) the process's own registry is read.

Labels carry only bounded words: a route's template (never the path asked for), a method,
a status, a platform, an outcome. Never an id, a domain, or anything a seller typed.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astra.errors import AstraError

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
T = TypeVar("T")

REQUESTS = Counter(
    "astra_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "astra_http_request_duration_seconds",
    "Time from a request's arrival to its last response byte, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DELIVERIES = Counter(
    "astra_webhook_deliveries",
    "Order webhook deliveries answered, by platform and outcome (the receipt's outcome, or "
    "failed, unauthorized, malformed, unknown_integration, too_large).",
    ["platform", "outcome"],
)
# Sampled by each process (astra.ops.sample_pool); the dead's samples are dropped.
DB_POOL = Gauge(
    "astra_db_pool_connections",
    "The request pool's connections, by state (in_use: lent out; size: open; max: the most it "
    "may open), over every live process.",
    ["state"],
    multiprocess_mode="livesum",
)

# Requests that are no route's (404s, a refused Host) share one label.
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A refused delivery's status, as an outcome; any other failure is "failed".
_REFUSALS = {400: "malformed", 401: "unauthorized", 404: "unknown_integration", 413: "too_large"}


def multiprocess() -> bool:
    return MULTIPROC_DIR_VARIABLE in os.environ


def route_template(scope: Scope) -> str:
    """The matched route's template (`/api/integrations/{integration_id}`), never the path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    return f"{path}/{{path}}" if isinstance(route, Mount) else path


class RequestMetrics:
    """Counts each HTTP request by route template, method and status, and times it to the
    end of its response. The label children are kept, so a request costs two increments."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            key = (route_template(scope), method, str(status))
            children = self._children.get(key)
            if children is None:
                children = (
                    REQUESTS.labels(*key),
                    REQUEST_SECONDS.labels(key[0], method),
                )
                self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


def delivery_platform(headers: Mapping[str, str]) -> str:
    """Which platform a delivery claims to come from, by its headers' names."""
    if "x-shopify-topic" in headers or "x-shopify-hmac-sha256" in headers:
        return "shopify"
    if any(name.startswith("x-wc-webhook-") for name in headers):
        return "woocommerce"
    return "unknown"


async def count_delivery(headers: Mapping[str, str], receiving: Awaitable[T]) -> T:
    """Await a webhook's handling and count its outcome: the receipt's word, a refusal's
    kind (by its status), or `failed` (nothing stored; the platform sends it again)."""
    platform = delivery_platform(headers)
    try:
        outcome = await receiving
    except AstraError as exc:
        DELIVERIES.labels(platform, _REFUSALS.get(exc.status_code, "failed")).inc()
        raise
    except Exception:
        DELIVERIES.labels(platform, "failed").inc()
        raise
    DELIVERIES.labels(platform, str(outcome)).inc()
    return outcome


class _Scrape(Collector):
    """Every process's samples (or this one's), then the ones read for this scrape."""

    def __init__(self, extra: Iterable[Metric]) -> None:
        self._extra = list(extra)

    def collect(self) -> Iterator[Metric]:
        if multiprocess():
            _forget_vanished_processes(Path(os.environ[MULTIPROC_DIR_VARIABLE]))
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            yield from registry.collect()
        else:
            yield from REGISTRY.collect()
        yield from self._extra


# A live gauge's file: `gauge_live{mode}_{pid}.db`.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _forget_vanished_processes(directory: Path) -> None:
    """Drop the live gauges of processes that no longer run: one killed outright (the OOM
    killer) never marked itself dead, and its samples would be summed with the living."""
    pids = {
        int(found.group(1))
        for path in directory.iterdir()
        if (found := _LIVE_GAUGE_FILE.fullmatch(path.name)) is not None
    }
    for pid in pids - {os.getpid()}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            # Another scrape may be removing the same files.
            with contextlib.suppress(FileNotFoundError):
                mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, as another user


def exposition(extra: Iterable[Metric] = ()) -> bytes:
    """The Prometheus text format of every counted metric plus `extra`."""
    return generate_latest(_Scrape(extra))


def process_exited() -> None:
    """Drop this process's live gauges (the pool's) from what scrapes add up."""
    if multiprocess():
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
