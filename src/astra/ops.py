"""The operator's endpoints: /healthz (liveness), /readyz (readiness), /metrics.

They are answered ahead of the app's middleware (`OpsEndpoints`, outermost): no Host check
(a load balancer's probe names the address it dials), no access log line, no request
metrics, no session. /metrics needs ASTRA_METRICS_TOKEN as a bearer token, or is served
on loopback only by `astra serve --metrics-port` (`metrics_app`); neither set, it is a 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from astra import metrics
from astra.db.session import Database, begin
from astra.db.urls import app_url
from astra.settings import Settings

logger = logging.getLogger(__name__)

HEALTHZ, READYZ, METRICS = "/healthz", "/readyz", "/metrics"
# A probe or a scrape waits this long for the database, then answers without it.
DATABASE_TIMEOUT_SECONDS = 2.0
POOL_SAMPLE_SECONDS = 1.0
MIGRATIONS = Path(__file__).parent / "db" / "migrations"

SCHEMA_REVISION = text("SELECT version_num FROM public.alembic_version")
STATEMENT_TIMEOUT = text(f"SET LOCAL statement_timeout = {int(DATABASE_TIMEOUT_SECONDS * 1000)}")
SYNC_TOTALS = text("SELECT state, syncs, missed_by_webhook FROM public.app_sync_totals()")
# Jobs due and waiting: how many, and how long the longest has waited (since it was due,
# or deferred). A job's `deferred` event is its first.
QUEUE_DEPTH = text(
    """
    SELECT count(*) AS depth,
           coalesce(extract(epoch FROM now() - min(coalesce(j.scheduled_at, e.at))), 0)
             AS oldest_seconds
    FROM public.procrastinate_jobs j
    LEFT JOIN LATERAL (
      SELECT min(ev.at) AS at FROM public.procrastinate_events ev
      WHERE ev.job_id = j.id AND ev.type = 'deferred'
    ) e ON true
    WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
    """
)
SYNC_STATES = ("queued", "running", "done", "failed")

NOT_MIGRATED = "The database's schema is older than this version: run `astra migrate`."


@dataclass(frozen=True)
class SchemaRevisions:
    """This code's migrations: the revisions they end at, and every one they pass."""

    heads: frozenset[str]
    known: frozenset[str]


def schema_revisions() -> SchemaRevisions:
    """Read once, at start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    known = frozenset(revision.revision for revision in script.walk_revisions())
    return SchemaRevisions(heads=frozenset(script.get_heads()), known=known)


async def readiness(database: Database, schema: SchemaRevisions) -> str | None:
    """None when PostgreSQL answers and its schema is at this code's head (or past it: a
    newer version's); else why not."""
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
            async with begin(database) as db:
                revisions = frozenset((await db.execute(SCHEMA_REVISION)).scalars())
    except TimeoutError:
        return "The database did not answer in time."
    except DBAPIError as exc:
        # 42501: the runtime role may not read the revision yet, granted by a later migration.
        if getattr(exc.orig, "sqlstate", None) == "42501":
            return NOT_MIGRATED
        return "The database is unavailable."
    except (SQLAlchemyError, OSError):
        return "The database is unavailable."
    if revisions == schema.heads:
        return None
    if not revisions or revisions <= schema.known:
        return NOT_MIGRATED
    # A revision this code does not know: a newer version migrated it, as the first new
    # process of a rolling deploy does while the old ones still serve. Unready then, the
    # whole old fleet would leave the load balancer at once, before a new process is up.
    return None


async def database_metrics(database: Database) -> list[Metric]:
    """What scrapes read from the database: syncs by state, orders the syncs found missing,
    the queue's depth and its oldest due job's age. Bounded by a statement timeout; when
    the read fails, `astra_metrics_database_up` says 0 and the rest is left out."""
    up = GaugeMetricFamily(
        "astra_metrics_database_up", "1 when this scrape could read the database, else 0."
    )
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS * 2):
            async with begin(database) as db:
                await db.execute(STATEMENT_TIMEOUT)
                totals = list(await db.execute(SYNC_TOTALS))
                queue = (await db.execute(QUEUE_DEPTH)).one()
    except (TimeoutError, SQLAlchemyError, OSError) as exc:
        logger.warning("metrics: the database read failed", extra={"error": type(exc).__name__})
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    syncs = GaugeMetricFamily(
        "astra_syncs", "Stores' syncs by the state of their current or last run.", labels=["state"]
    )
    by_state = {row.state: row.syncs for row in totals}
    for state in SYNC_STATES:
        syncs.add_metric([state], by_state.get(state, 0))
    # A gauge: summed over the stores still held, it falls when one is removed (as a
    # counter, the fall would read as a reset and increase() would count it all anew).
    missed = GaugeMetricFamily(
        "astra_sync_orders_missed_by_webhook",
        "Order changes a sync (reconciliation) found that no webhook had brought, over every "
        "store Astra still holds (falls when a store is removed).",
    )
    missed.add_metric([], sum(row.missed_by_webhook for row in totals))
    depth = GaugeMetricFamily("astra_queue_depth", "Jobs due and waiting for a worker.")
    depth.add_metric([], queue.depth)
    oldest = GaugeMetricFamily(
        "astra_queue_oldest_job_age_seconds",
        "How long the job waiting longest has been due (0 when none waits).",
    )
    oldest.add_metric([], float(queue.oldest_seconds))
    return [up, syncs, missed, depth, oldest]


def publish_pool(database: Database) -> None:
    """This process's request pool use, as the gauge shows it."""
    stats = database.pool_stats()
    metrics.DB_POOL.labels("in_use").set(stats.in_use)
    metrics.DB_POOL.labels("size").set(stats.size)
    metrics.DB_POOL.labels("max").set(stats.max_size)


async def sample_pool(database: Database) -> None:
    """Publish this process's request pool use, every POOL_SAMPLE_SECONDS, until cancelled."""
    while True:
        publish_pool(database)
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


@asynccontextmanager
async def pool_sampled(database: Database) -> AsyncIterator[None]:
    """Sample the pool while the block runs; this process's samples go with it."""
    task = asyncio.create_task(sample_pool(database), name="pool metrics")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        metrics.process_exited()


async def metrics_response(database: Database, *, serves_requests: bool = True) -> Response:
    extra = await database_metrics(database)
    if serves_requests:
        # This worker's own pool as of now (the others' at their last sample).
        publish_pool(database)
    return Response(
        metrics.exposition(extra),
        media_type=metrics.CONTENT_TYPE,
        headers={"Cache-Control": "no-store"},
    )


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def bearer_token_matches(headers: Headers, token: str) -> bool:
    """Whether the request carries `Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


class OpsEndpoints:
    """Answers /healthz, /readyz and (with ASTRA_METRICS_TOKEN) /metrics before the app's
    own middleware; every other request goes to `app`. The database, the schema heads and
    the settings are the app's (`app.state`, set by its lifespan)."""

    def __init__(self, app: ASGIApp, *, metrics_token: str | None) -> None:
        self.app = app
        self.metrics_token = metrics_token
        self.paths = {HEALTHZ, READYZ} | ({METRICS} if metrics_token else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        response = await self._answer(scope)
        await response(scope, receive, send)

    async def _answer(self, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            return _json(405, {"detail": "Method Not Allowed"}, {"Allow": "GET, HEAD"})
        path = scope["path"]
        if path == HEALTHZ:
            return _json(200, {"status": "ok"})
        state = scope["app"].state
        if path == READYZ:
            reason = await readiness(state.db, state.schema)
            if reason is None:
                return _json(200, {"status": "ready"})
            return _json(503, {"status": "unavailable", "reason": reason})
        assert self.metrics_token is not None
        if not bearer_token_matches(Headers(scope=scope), self.metrics_token):
            return _json(401, {"detail": "Not signed in"}, {"WWW-Authenticate": "Bearer"})
        return await metrics_response(state.db)


def metrics_app(settings: Settings) -> Starlette:
    """/metrics alone, for `astra serve --metrics-port`: no token, served on loopback, with
    one database connection of its own for the scrape-time reads."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database = Database(app_url(settings), pool_size=1, max_overflow=0)
        app.state.db = database
        try:
            yield
        finally:
            await database.dispose()

    async def scrape(request: Request) -> Response:
        # Its one connection is not a request pool: it is not in the pool gauge.
        return await metrics_response(request.app.state.db, serves_requests=False)

    return Starlette(
        routes=[Route(METRICS, scrape, methods=["GET"])],
        # Only the loopback's names: a page in a browser on this host whose name was
        # re-pointed at 127.0.0.1 (DNS rebinding) names its own, and is refused.
        middleware=[
            Middleware(
                TrustedHostMiddleware,
                allowed_hosts=["127.0.0.1", "localhost"],
                www_redirect=False,
            )
        ],
        lifespan=lifespan,
    )


def samples(exposition: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of each sample in a Prometheus text exposition (for tests and
    operators' scripts)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)
