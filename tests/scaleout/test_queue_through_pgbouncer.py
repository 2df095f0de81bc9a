"""The job queue through pgbouncer in transaction mode (ASTRA_DB_POOLER_URL): LISTEN would be
lost with its transaction, so the worker does not listen; it polls, and still runs every
job, deferred through the same pooler, within a poll interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from astra.db.session import Database
from astra.db.urls import app_url
from astra.settings import Settings
from astra.sync.queue import job_app, open_queue
from astra.sync.worker import QueueWorker, worker_options
from tests.conftest import TestDatabase
from tests.scaleout.pgbouncer import PgBouncer, pgbouncer_binary, running_pgbouncer

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.skipif(pgbouncer_binary() is None, reason="needs Debian's pgbouncer"),
]


@pytest.fixture
def bouncer(test_database: TestDatabase) -> Iterator[PgBouncer]:
    assert test_database.settings.database_url
    with running_pgbouncer(
        make_url(test_database.settings.database_url),
        app_password=test_database.settings.resolved_app_db_password,
        pool_size=3,
    ) as running:
        yield running


async def test_a_polling_worker_runs_jobs_through_the_pooler(
    test_database: TestDatabase, bouncer: PgBouncer
) -> None:
    settings: Settings = test_database.settings.model_copy(
        update={"db_pooler_url": bouncer.url(), "worker_poll_seconds": 0.5}
    )
    options = worker_options(settings, concurrency=2, name="pooled")
    assert not options["listen_notify"]
    database = Database(app_url(settings), pool_size=2, max_overflow=0)
    app = job_app(settings, database)
    started: dict[str, float] = {}
    all_started = asyncio.Event()
    runs = 8

    @app.task(name="test.started")
    async def record(label: str) -> None:
        started[label] = time.monotonic()
        if len(started) == runs:
            all_started.set()

    try:
        async with open_queue(app, settings, max_connections=4):
            worker = QueueWorker(app, options)
            worker.start()
            try:
                deferred = {}
                # More runs than psycopg's prepare threshold (5): nothing gets prepared.
                for n in range(runs):
                    label = f"job-{n}"
                    deferred[label] = time.monotonic()
                    await app.configure_task("test.started").defer_async(label=label)
                    await asyncio.sleep(0.2)
                await asyncio.wait_for(all_started.wait(), timeout=15)
            finally:
                await worker.stop()
    finally:
        await database.dispose()

    assert set(started) == set(deferred)
    waits = [started[label] - deferred[label] for label in deferred]
    # Found by polling every 0.5 s (plus the time a poll takes), never by a notification.
    assert max(waits) < 1.5, waits
    assert "prepared statement" not in bouncer.log()
