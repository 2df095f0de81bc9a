"""The job queue: a procrastinate App on the app's own PostgreSQL, as the runtime role.

One App per process, built from the settings with every task registered on it: the web
app defers through it (`app.state.jobs`), and workers run its jobs. Task bodies live in
their own modules; here they are named, locked and scheduled.

Behind ASTRA_DB_POOLER_URL (pgbouncer in transaction mode) a LISTEN is lost as soon as its
transaction ends, so workers there do not listen: they poll every ASTRA_WORKER_POLL_SECONDS
(and psycopg's prepared statements are off, as asyncpg's are for the app).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import procrastinate
from procrastinate import exceptions as queue_errors
from procrastinate.jobs import Job, Status
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from astra.connections import keep_webhooks_healthy
from astra.db.session import Database, begin
from astra.db.urls import app_url
from astra.errors import NotFound
from astra.settings import Settings
from astra.sync.engine import run_sync
from astra.sync.retention import prune_deliveries
from astra.sync.schedule import Schedule

logger = logging.getLogger(__name__)

PRUNE_DELIVERIES = "astra.prune_deliveries"
PRUNE_JOBS = "astra.prune_jobs"
RETRY_STALLED_JOBS = "astra.retry_stalled_jobs"
SYNC_STORE = "astra.sync_store"
RECONCILE = "astra.reconcile"
WEBHOOK_HEALTH = "astra.webhook_health"
WITH_WEBHOOKS = text("SELECT * FROM public.app_integrations_with_webhooks()")
TO_RECONCILE = text("SELECT id FROM public.app_integrations_to_reconcile() AS id")
# How the queue's own connections show in pg_stat_activity, apart from the request pool's.
QUEUE_APPLICATION_NAME = "astra-queue"


class BackToQueueWhenInterrupted(procrastinate.BaseRetryStrategy):
    """A job interrupted through no fault of its own goes back to the queue: at once when
    its worker shuts down, after a short wait when the database dropped its connection (an
    outage, a failover; the pool opens a fresh one for the next try). Any other failure is
    final: the job's own code decides what else deserves another attempt."""

    def get_retry_decision(
        self, *, exception: BaseException, job: Job
    ) -> procrastinate.RetryDecision | None:
        # A shutdown cancels async jobs (asyncio) or asks sync ones to stop (JobAborted).
        # A seller's own abort request comes this way too, but the queue then marks the
        # job failed instead of retrying it (procrastinate_retry_job_v2).
        if isinstance(exception, asyncio.CancelledError | queue_errors.JobAborted):
            return procrastinate.RetryDecision(retry_in={"seconds": 0})
        if (
            isinstance(exception, DBAPIError)
            and exception.connection_invalidated
            and job.attempts < DISCONNECT_RETRIES
        ):
            return procrastinate.RetryDecision(retry_in={"seconds": 2**job.attempts})
        return None


# Backing off 1, 2, 4, 8, 16 s: half a minute of outage before a job gives up.
DISCONNECT_RETRIES = 5
RETRY_INTERRUPTED = BackToQueueWhenInterrupted()


def behind_pooler(settings: Settings) -> bool:
    return settings.db_pooler_url is not None


def connection_pool(settings: Settings, *, max_connections: int) -> AsyncConnectionPool:
    """psycopg's pool for the queue, as the runtime role, to the server or through the
    pooler (app_url). The password goes as a keyword of its own, never inside a connection
    string that could end up in a log line."""
    url = app_url(settings)
    params: dict[str, Any] = {
        key: value for key, value in url.query.items() if key != "prepared_statement_cache_size"
    }
    params["application_name"] = QUEUE_APPLICATION_NAME
    for key, value in {
        "host": url.host,
        "port": url.port,
        "dbname": url.database,
        "user": url.username,
        "password": url.password,
    }.items():
        if value is not None:
            params[key] = value
    if behind_pooler(settings):
        # psycopg prepares a statement after its fifth run on a connection; a transaction
        # pooler may hand the next run to a server connection that never saw it.
        params["prepare_threshold"] = None
    return AsyncConnectionPool(
        conninfo="",
        kwargs=params,
        min_size=1,
        max_size=max_connections,
        open=False,
        # A connection the server dropped (a restart) is replaced, not handed out.
        check=AsyncConnectionPool.check_connection,
    )


@asynccontextmanager
async def open_queue(
    app: procrastinate.App, settings: Settings, *, max_connections: int
) -> AsyncIterator[procrastinate.App]:
    """Open the App on its own pool, without waiting for a first connection: a process that
    starts while the database is down still starts, and the queue catches up when it is back
    (as the app's own pool does)."""
    pool = connection_pool(settings, max_connections=max_connections)
    await pool.open(wait=False)
    try:
        await app.open_async(pool)
        yield app
    finally:
        await app.close_async()
        await pool.close()


def job_app(settings: Settings, database: Database) -> procrastinate.App:
    """The App with every task registered, to open with `open_queue`; `database` is the
    runtime role's engine the tasks run their own transactions on (for a seller's rows,
    through astra.sync.owner.acting_for)."""
    # Its pool comes with open_queue; procrastinate never makes one of its own.
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    schedule = Schedule.from_settings(settings)

    # Periodic tasks take the tick's `timestamp`; a queueing lock keeps a slow tick from
    # piling up copies, and a lock keeps two from running at once.
    @app.periodic(cron=schedule.prune_deliveries, periodic_id="hourly")
    @app.task(
        name=PRUNE_DELIVERIES, queueing_lock=PRUNE_DELIVERIES, lock=PRUNE_DELIVERIES,
        retry=RETRY_INTERRUPTED,
    )  # fmt: skip
    async def prune_deliveries_task(timestamp: int | None = None) -> int:
        batches = await prune_deliveries(database, retention_days=settings.delivery_retention_days)
        return sum(batches)

    # Successful jobs are deleted as they finish (worker option delete_jobs); failed,
    # aborted and cancelled ones stay for inspection as long as the delivery log's rows.
    @app.periodic(cron=schedule.prune_jobs, periodic_id="daily")
    @app.task(name=PRUNE_JOBS, queueing_lock=PRUNE_JOBS, lock=PRUNE_JOBS, retry=RETRY_INTERRUPTED)
    async def prune_jobs_task(timestamp: int | None = None) -> None:
        await app.job_manager.delete_old_jobs(
            nb_hours=settings.delivery_retention_days * 24,
            include_failed=True,
            include_cancelled=True,
            include_aborted=True,
        )

    # A worker that died without a shutdown (SIGKILL, a lost host) leaves its jobs in
    # `doing`; once its heartbeat is ASTRA_WORKER_STALLED_SECONDS old, this puts them back.
    # No lock: a recovery job stranded by its own dead worker would hold it forever.
    @app.periodic(cron=schedule.retry_stalled_jobs, periodic_id="stalled")
    @app.task(name=RETRY_STALLED_JOBS, queueing_lock=RETRY_STALLED_JOBS, retry=RETRY_INTERRUPTED)
    async def retry_stalled_jobs_task(timestamp: int | None = None) -> int:
        return await retry_stalled_jobs(app, stalled_seconds=settings.worker_stalled_seconds)

    # One store's sync (backfill the first time, then reconciliation): one at a time per
    # store, by the lock defer_sync gives it. It acts as the integration's owner.
    @app.task(name=SYNC_STORE, retry=RETRY_INTERRUPTED)
    async def sync_store_task(integration_id: str) -> str:
        try:
            synced = await run_sync(database, settings, uuid.UUID(integration_id))
        except NotFound:
            return "gone"  # deleted since it was queued: nothing to do
        return synced.state

    # Every ASTRA_SYNC_INTERVAL_SECONDS, each active integration with credentials.
    @app.periodic(cron=schedule.reconcile, periodic_id="reconcile")
    @app.task(name=RECONCILE, queueing_lock=RECONCILE, lock=RECONCILE, retry=RETRY_INTERRUPTED)
    async def reconcile_task(timestamp: int | None = None) -> int:
        async with begin(database) as db:
            ids = list((await db.execute(TO_RECONCILE)).scalars())
        for integration_id in ids:
            await defer_sync(app, integration_id)
        return len(ids)

    # Daily: the webhooks Astra registered still exist and are active, else set up again.
    @app.periodic(cron=schedule.webhook_health, periodic_id="webhook-health")
    @app.task(
        name=WEBHOOK_HEALTH, queueing_lock=WEBHOOK_HEALTH, lock=WEBHOOK_HEALTH,
        retry=RETRY_INTERRUPTED,
    )  # fmt: skip
    async def webhook_health_task(timestamp: int | None = None) -> int:
        async with begin(database) as db:
            targets = list(await db.execute(WITH_WEBHOOKS))
        for target in targets:
            await keep_webhooks_healthy(database, settings, target.integration_id, target.user_id)
        return len(targets)

    return app


async def defer_sync(app: procrastinate.App, integration_id: uuid.UUID) -> int | None:
    """Queue the store's sync, unless one is waiting already (one runs at a time)."""
    return await defer_exclusive(
        app, SYNC_STORE, f"store:{integration_id}", integration_id=str(integration_id)
    )


# No live worker's heartbeat is this old: with it, `retry_stalled_jobs` takes only the jobs
# left `doing` by no worker at all (see QueueWorker.stop).
ORPHANS_ONLY = 10**9


async def retry_stalled_jobs(app: procrastinate.App, *, stalled_seconds: float) -> int:
    """Put the jobs of workers silent for `stalled_seconds` back in the queue; how many.

    A job whose key has another job waiting already (the same queueing lock: a sync that
    reconciliation asked for again while this one ran) cannot go back; procrastinate would
    leave it `doing` for ever, holding the key's lock, so the waiting one never ran. It
    ends as aborted instead, and the waiting job does its work (a sync resumes from the
    cursor it saved)."""
    retried = 0
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_seconds):
        try:
            await app.job_manager.retry_job(job)
        except queue_errors.UniqueViolation:
            await _superseded(app, job)
            continue
        except queue_errors.ConnectorException:
            # It finished, or another recovery took it, between the query and now.
            continue
        logger.warning(
            "Job back in the queue: its worker stopped answering",
            extra={"job_id": job.id, "task": job.task_name},
        )
        retried += 1
    return retried


async def _superseded(app: procrastinate.App, job: Job) -> None:
    assert job.id is not None
    try:
        await app.job_manager.finish_job_by_id_async(
            job.id, status=Status.ABORTED, delete_job=False
        )
    except queue_errors.ConnectorException:
        return  # another recovery ended it first
    logger.warning(
        "Job ended: the same job waits in the queue already and does its work",
        extra={"job_id": job.id, "task": job.task_name},
    )


async def defer_exclusive(
    app: procrastinate.App, task: str, key: str, **task_kwargs: Any
) -> int | None:
    """Defer `task` as the one job of `key` (e.g. one sync per store): never two of them
    running at once (`lock`), never more than one waiting (`queueing_lock`). The new job's
    id, or None when one is already waiting."""
    try:
        return await app.configure_task(task, lock=key, queueing_lock=key).defer_async(
            **task_kwargs
        )
    except queue_errors.AlreadyEnqueued:
        return None
