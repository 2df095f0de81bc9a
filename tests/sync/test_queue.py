"""The queue on the app's own database: procrastinate's schema from migration 0007, used as
the runtime role with exactly the rights it needs, and one job per lock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import procrastinate
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.urls import APP_ROLE
from astra.sync.queue import (
    PRUNE_DELIVERIES,
    PRUNE_JOBS,
    RETRY_STALLED_JOBS,
    connection_pool,
    defer_exclusive,
)
from astra.sync.worker import worker_options
from tests.conftest import TestDatabase

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


async def job_rows(owner_engine: AsyncEngine) -> list[tuple[str, str]]:
    async with owner_engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT task_name, status FROM procrastinate_jobs ORDER BY id")
        )
        return [(row.task_name, row.status) for row in rows]


async def test_a_job_is_deferred_and_run_as_the_runtime_role(
    test_database: TestDatabase, jobs: procrastinate.App, owner_engine: AsyncEngine
) -> None:
    # Each of the queue's own tasks, all run with the runtime role's rights alone.
    job_ids = [
        await jobs.configure_task(task).defer_async()
        for task in (PRUNE_DELIVERIES, PRUNE_JOBS, RETRY_STALLED_JOBS)
    ]
    options = worker_options(test_database.settings, concurrency=1, name="test")

    await jobs.run_worker_async(**options, wait=False)

    # Succeeded, so deleted as they finished; the worker registered and unregistered itself.
    left = {j.id for j in await jobs.job_manager.list_jobs_async()}
    assert left.isdisjoint(job_ids), await job_rows(owner_engine)
    async with owner_engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM procrastinate_workers")) == 0


async def test_the_runtime_role_has_what_the_queue_needs_and_no_more(
    owner_engine: AsyncEngine,
) -> None:
    async with owner_engine.connect() as connection:
        granted = {
            (row.table, privilege)
            for row in await connection.execute(
                text(
                    "SELECT c.relname AS table FROM pg_class c WHERE c.relkind = 'r'"
                    " AND c.relname LIKE 'procrastinate%'"
                )
            )
            for privilege in PRIVILEGES
            if await connection.scalar(
                text("SELECT has_table_privilege(:role, :table, :privilege)"),
                {"role": APP_ROLE, "table": f"public.{row.table}", "privilege": privilege},
            )
        }
        # Functions: executable by the runtime role, and by nobody else through PUBLIC.
        functions = (
            await connection.execute(
                text(
                    "SELECT p.proname, has_function_privilege(:role, p.oid, 'EXECUTE') AS app,"
                    " coalesce(array_to_string(p.proacl, ','), '') AS acl FROM pg_proc p"
                    " WHERE p.proname LIKE 'procrastinate%'"
                ),
                {"role": APP_ROLE},
            )
        ).all()
    writable = {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert granted == (
        {(t, p) for t in ("procrastinate_jobs", "procrastinate_workers") for p in writable}
        | {("procrastinate_periodic_defers", p) for p in writable}
        | {("procrastinate_events", "SELECT"), ("procrastinate_events", "INSERT")}
    )
    assert len(functions) > 10
    for name, app_may, acl in functions:
        assert app_may, name
        assert not acl.startswith("=") and ",=" not in acl, (name, acl)


async def test_a_queueing_lock_keeps_one_job_waiting(jobs: procrastinate.App) -> None:
    first = await defer_exclusive(jobs, PRUNE_DELIVERIES, "store:1")
    again = await defer_exclusive(jobs, PRUNE_DELIVERIES, "store:1")
    other = await defer_exclusive(jobs, PRUNE_DELIVERIES, "store:2")

    assert first is not None and other is not None
    assert again is None
    waiting = await jobs.job_manager.list_jobs_async(status="todo")
    assert sorted(j.queueing_lock or "" for j in waiting) == ["store:1", "store:2"]


async def test_a_lock_never_runs_two_jobs_at_once(
    test_database: TestDatabase, jobs: procrastinate.App
) -> None:
    """Two jobs of one key, a worker free to run four at once: the second starts only after
    the first has finished; a job of another key runs beside them."""
    running: set[str] = set()
    overlaps: list[tuple[str, str]] = []
    finished: list[str] = []

    @jobs.task(name="test.hold")
    async def hold(label: str, key: str) -> None:
        overlaps.extend((label, other) for other in running if other.startswith(key))
        running.add(label)
        await asyncio.sleep(0.3)
        running.discard(label)
        finished.append(label)

    for label, key in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        # Deferred one by one: the first is running by the time the second is queued.
        await jobs.configure_task("test.hold", lock=key).defer_async(label=label, key=key)
    options = worker_options(test_database.settings, concurrency=4, name="test")

    await jobs.run_worker_async(**options, wait=False)
    # wait=False stops once nothing can start: a2 waits behind a1's lock, so run again.
    await jobs.run_worker_async(**options, wait=False)

    assert overlaps == []
    assert sorted(finished) == ["a1", "a2", "b1"]
    assert finished.index("a1") < finished.index("a2")


def test_behind_a_pooler_no_statement_is_prepared_and_no_worker_listens(
    test_database: TestDatabase,
) -> None:
    pooled_settings = test_database.settings.model_copy(
        update={"db_pooler_url": "postgresql://127.0.0.1:6432/astra"}
    )
    direct = connection_pool(test_database.settings, max_connections=2)
    pooled = connection_pool(pooled_settings, max_connections=2)
    for pool in (direct, pooled):
        # The password only as a keyword, never in a connection string.
        assert pool.conninfo == ""
        assert pool.kwargs["user"] == APP_ROLE
        assert pool.kwargs["password"] == test_database.settings.resolved_app_db_password
    assert "prepare_threshold" not in direct.kwargs
    assert (pooled.kwargs["prepare_threshold"], pooled.kwargs["port"]) == (None, 6432)
    assert worker_options(test_database.settings, concurrency=1, name="w")["listen_notify"]
    assert not worker_options(pooled_settings, concurrency=1, name="w")["listen_notify"]


@pytest.mark.parametrize("seconds", [7, 61, 5400, 90000])
def test_an_uneven_interval_is_refused(seconds: int) -> None:
    from astra.sync.schedule import cron_every

    with pytest.raises(ValueError, match="does not divide"):
        cron_every(seconds)


@pytest.mark.parametrize(
    ("seconds", "cron"),
    [(2, "* * * * * */2"), (30, "* * * * * */30"), (900, "*/15 * * * *"),
     (3600, "0 */1 * * *"), (21600, "0 */6 * * *"), (86400, "0 0 * * *")],
)  # fmt: skip
def test_an_even_interval_is_a_cron_line(seconds: int, cron: str) -> None:
    from astra.sync.schedule import cron_every

    assert cron_every(seconds) == cron


def test_only_interruptions_send_a_job_back() -> None:
    """A shutdown at once; a dropped database connection after 1, 2, 4, 8, 16 s, then no
    more; a failure of the job's own is final."""
    from procrastinate.jobs import Job
    from sqlalchemy.exc import DBAPIError

    from astra.sync.queue import RETRY_INTERRUPTED

    def decision(exception: BaseException, attempts: int = 0) -> float | None:
        job = Job(id=1, queue="default", lock=None, queueing_lock=None, task_name="t",
                  attempts=attempts)  # fmt: skip
        found = RETRY_INTERRUPTED.get_retry_decision(exception=exception, job=job)
        if found is None or found.retry_at is None:
            return None
        return round((found.retry_at - datetime.now(UTC)).total_seconds())

    dropped = DBAPIError("SELECT 1", None, ConnectionError(), connection_invalidated=True)
    assert decision(asyncio.CancelledError()) == 0
    assert [decision(dropped, n) for n in range(6)] == [1, 2, 4, 8, 16, None]
    assert decision(DBAPIError("SELECT 1", None, ValueError())) is None
    assert decision(RuntimeError("the job's own bug")) is None


async def test_one_in_process_worker_per_process(
    test_database: TestDatabase, jobs: procrastinate.App, owner_engine: AsyncEngine
) -> None:
    from astra.sync.worker import start_in_process, stop_in_process

    start_in_process(jobs, test_database.settings)
    try:
        with pytest.raises(RuntimeError, match="already runs its queue worker"):
            start_in_process(jobs, test_database.settings)
    finally:
        await stop_in_process()
    async with owner_engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM procrastinate_workers")) == 0
