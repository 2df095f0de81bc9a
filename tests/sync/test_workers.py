"""Real worker processes on the test database: `astra worker` runs what the app deferred,
a worker killed mid-job leaves the job to the next one (stalled-job recovery), a stopped
worker hands its job back, and `astra serve` runs one worker per process until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import procrastinate
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.sync.queue import PRUNE_DELIVERIES, defer_exclusive
from testkit.job_worker import HOLD
from testkit.processes import HOST, free_port, start, wait_until_serving
from tests.conftest import TestDatabase
from tests.sync.conftest import add_deliveries, delivery_ids, seller_with_store

ASTRA_WORKER = [sys.executable, "-m", "astra.cli", "worker"]
HOLDING_WORKER = [sys.executable, "-m", "testkit.job_worker"]


def environment(test_database: TestDatabase, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASTRA_")}
    env["DATABASE_URL"] = str(test_database.settings.database_url)
    env["ASTRA_DATA_DIR"] = str(test_database.settings.data_dir)
    return env | settings


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float) -> float:
    """Seconds until `check()` holds; fails after `within` seconds."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, "not within the time allowed"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def job(owner_engine: AsyncEngine, job_id: int) -> tuple[str, int, int | None] | None:
    """(status, attempts, worker id) of a job; None once it is gone (a success is deleted)."""
    async with owner_engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT status, attempts, worker_id FROM procrastinate_jobs WHERE id = :id"),
                {"id": job_id},
            )
        ).first()
    return None if row is None else (row.status, row.attempts, row.worker_id)


async def registered_workers(owner_engine: AsyncEngine) -> int:
    async with owner_engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM procrastinate_workers")))


def stop(process: subprocess.Popen[bytes], *, timeout: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


def log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def test_astra_worker_runs_a_job_the_app_deferred(
    test_database: TestDatabase,
    jobs: procrastinate.App,
    owner_engine: AsyncEngine,
    password_hash: str,
    tmp_path: Path,
) -> None:
    alice, alice_shop = await seller_with_store(owner_engine, "alice@example.com", password_hash)
    bob, bob_shop = await seller_with_store(owner_engine, "bob@example.com", password_hash)
    await add_deliveries(owner_engine, alice_shop, alice, [timedelta(days=31), timedelta(days=1)])
    await add_deliveries(owner_engine, bob_shop, bob, [timedelta(days=60)])
    job_id = await jobs.configure_task(PRUNE_DELIVERIES).defer_async()
    log = tmp_path / "worker.log"
    worker = start([*ASTRA_WORKER, "--concurrency", "2"], environment(test_database), log)
    try:
        await eventually(lambda: _gone(owner_engine, job_id), within=60)
    finally:
        code = stop(worker)

    assert code == 0, log.read_text()
    assert await delivery_ids(owner_engine) == {alice_shop: {"1-24h"}}
    # It stopped cleanly: unregistered, nothing left running.
    assert await registered_workers(owner_engine) == 0
    assert "Traceback" not in log.read_text()


async def _gone(owner_engine: AsyncEngine, job_id: int) -> bool:
    return await job(owner_engine, job_id) is None


async def _running(owner_engine: AsyncEngine, job_id: int) -> bool:
    state = await job(owner_engine, job_id)
    return state is not None and state[0] == "doing"


async def test_a_job_of_a_killed_worker_is_picked_up_by_the_next(
    test_database: TestDatabase, jobs: procrastinate.App, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    """SIGKILL leaves the job `doing` under a worker that no longer beats; once its heartbeat
    is ASTRA_WORKER_STALLED_SECONDS old, the periodic retry_stalled_jobs of any live worker
    puts it back, and a worker runs it again."""
    env = environment(test_database, ASTRA_WORKER_STALLED_SECONDS="3")
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start(HOLDING_WORKER, env, first_log)
    second = None
    try:
        job_id = await jobs.configure_task(HOLD).defer_async()
        await eventually(lambda: _running(owner_engine, job_id), within=60)
        first.kill()
        first.wait(timeout=10)
        assert (await job(owner_engine, job_id) or ("",))[0] == "doing"

        second = start(HOLDING_WORKER, env, second_log)
        recovered_in = await eventually(lambda: _gone(owner_engine, job_id), within=60)
    finally:
        if first.poll() is None:
            first.kill()
        code = stop(second) if second is not None else None

    # The figure RELIABILITY.md quotes (pytest -s shows it).
    print(f"\nkilled worker's job done {recovered_in:.1f} s after the next worker started")
    assert code == 0, second_log.read_text()
    lines = log_lines(second_log)
    assert any(
        line["message"] == "Job back in the queue: its worker stopped answering"
        and line["job_id"] == job_id
        for line in lines
    ), second_log.read_text()
    assert any(
        f"{HOLD}[{job_id}]" in str(line["message"]) and "status: Success" in str(line["message"])
        for line in lines
    )
    # The stall was seen within the stalled timeout plus a tick or two, not minutes later.
    assert recovered_in < 20


async def test_a_stopped_worker_hands_its_running_job_back(
    test_database: TestDatabase, jobs: procrastinate.App, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    env = environment(test_database, ASTRA_WORKER_SHUTDOWN_SECONDS="0.5")
    log = tmp_path / "worker.log"
    worker = start(HOLDING_WORKER, env, log)
    try:
        job_id = await jobs.configure_task(HOLD).defer_async()
        await eventually(lambda: _running(owner_engine, job_id), within=60)
    finally:
        code = stop(worker, timeout=20)

    assert code == 0, log.read_text()
    state = await job(owner_engine, job_id)
    assert state is not None and state[:2] == ("todo", 1)
    assert await registered_workers(owner_engine) == 0


async def test_a_stopped_job_whose_key_waits_again_ends_and_lets_the_waiting_one_run(
    test_database: TestDatabase, jobs: procrastinate.App, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    """The same key asked for again while its job runs (reconciliation re-asking for a
    running sync): the stopped job cannot go back (its queueing lock is the waiting one's).
    procrastinate would leave it `doing`, holding the key's lock, and the waiting one would
    never run; it ends as aborted instead."""
    env = environment(test_database, ASTRA_WORKER_SHUTDOWN_SECONDS="0.5")
    log = tmp_path / "worker.log"
    worker = start(HOLDING_WORKER, env, log)
    try:
        running = await defer_exclusive(jobs, HOLD, "key:1")
        assert running is not None
        await eventually(lambda: _running(owner_engine, running), within=60)
        waiting = await defer_exclusive(jobs, HOLD, "key:1")
        assert waiting is not None
    finally:
        code = stop(worker, timeout=20)

    assert code == 0, log.read_text()
    assert await job(owner_engine, running) == ("aborted", 1, None)
    assert await job(owner_engine, waiting) == ("todo", 0, None)
    assert await registered_workers(owner_engine) == 0
    # The key's lock is free: the next worker takes the waiting one up.
    worker = start(HOLDING_WORKER, env, tmp_path / "next.log")
    try:
        await eventually(lambda: _running(owner_engine, waiting), within=60)
    finally:
        assert stop(worker, timeout=20) == 0


async def test_astra_serve_runs_one_worker_per_process_until_sigterm(
    test_database: TestDatabase,
    jobs: procrastinate.App,
    owner_engine: AsyncEngine,
    password_hash: str,
    tmp_path: Path,
) -> None:
    alice, alice_shop = await seller_with_store(owner_engine, "alice@example.com", password_hash)
    await add_deliveries(owner_engine, alice_shop, alice, [timedelta(days=45)])
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "astra.cli", "serve", "--host", HOST, "--port", str(port)]
    server = start([*command, "--workers", "2"], environment(test_database), log)
    try:
        wait_until_serving(server, f"http://{HOST}:{port}", log, timeout=90)

        async def two_workers() -> bool:
            return await registered_workers(owner_engine) == 2

        await eventually(two_workers, within=60)
        job_id = await jobs.configure_task(PRUNE_DELIVERIES).defer_async()
        await eventually(lambda: _gone(owner_engine, job_id), within=60)
    finally:
        code = stop(server)

    assert code == 0, log.read_text()
    assert await delivery_ids(owner_engine) == {}
    assert await registered_workers(owner_engine) == 0
    assert "Traceback" not in log.read_text()


async def test_astra_serve_no_worker_runs_none(
    test_database: TestDatabase, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "astra.cli", "serve", "--host", HOST, "--port", str(port)]
    server = start([*command, "--no-worker"], environment(test_database), log)
    try:
        wait_until_serving(server, f"http://{HOST}:{port}", log, timeout=90)
        await asyncio.sleep(1)
        assert await registered_workers(owner_engine) == 0
    finally:
        # One process: uvicorn shuts down, then re-raises the signal it caught.
        assert stop(server) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log.read_text()
