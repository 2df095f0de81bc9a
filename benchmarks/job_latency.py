"""How long a deferred job waits before a worker starts it: woken by LISTEN/NOTIFY, or found
by polling (as behind a transaction pooler), with the worker's settings as `astra serve`
runs them.

    python -m benchmarks.job_latency [--jobs 40] [--poll 1.0]

A throwaway database on DATABASE_URL's server (else an embedded server in a temporary data
dir), migrated, dropped afterwards. One process: the worker runs beside the code that
defers, so both read the same clock; jobs are spaced by a random pause, so they land at
every point of the polling cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from astra.db import migrate
from astra.db.embedded import embedded_database_url, stop_embedded
from astra.db.session import Database
from astra.db.urls import app_url
from astra.settings import Settings
from astra.sync.queue import job_app, open_queue
from astra.sync.worker import QueueWorker, worker_options


async def _admin(server: URL, statement: str) -> None:
    engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


async def measure(settings: Settings, *, listen: bool, jobs: int) -> list[float]:
    """Milliseconds from the defer call to the job's first line, for each job."""
    database = Database(app_url(settings), pool_size=2, max_overflow=0)
    app = job_app(settings, database)
    started: asyncio.Queue[float] = asyncio.Queue()

    @app.task(name="bench.started")
    async def record() -> None:
        started.put_nowait(time.perf_counter())

    options = worker_options(settings, concurrency=2, name="bench") | {"listen_notify": listen}
    waits = []
    try:
        async with open_queue(app, settings, max_connections=4):
            worker = QueueWorker(app, options)
            worker.start()
            await asyncio.sleep(1)  # registered, listening
            try:
                for _ in range(jobs):
                    await asyncio.sleep(random.uniform(0, settings.worker_poll_seconds))
                    deferred = time.perf_counter()
                    await app.configure_task("bench.started").defer_async()
                    waits.append((await asyncio.wait_for(started.get(), 30) - deferred) * 1000)
            finally:
                await worker.stop()
    finally:
        await database.dispose()
    return waits


def summary(name: str, waits: list[float]) -> str:
    ordered = sorted(waits)
    p95 = ordered[max(0, round(len(ordered) * 0.95) - 1)]
    return (
        f"{name:<22} n={len(waits):<4} median {statistics.median(waits):7.1f} ms   "
        f"p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--poll", type=float, default=Settings().worker_poll_seconds)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="astra-job-latency-"))
    embedded = os.environ.get("DATABASE_URL") is None
    raw = embedded_database_url(data_dir) if embedded else os.environ["DATABASE_URL"]
    server = make_url(raw).set(drivername="postgresql+asyncpg")
    name = f"astra_job_latency_{uuid.uuid4().hex[:8]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    settings = Settings(
        database_url=server.set(database=name).render_as_string(hide_password=False),
        data_dir=data_dir,
        worker_poll_seconds=args.poll,
    )
    try:
        await asyncio.to_thread(migrate.upgrade, settings)
        notified = await measure(settings, listen=True, jobs=args.jobs)
        polled = await measure(settings, listen=False, jobs=args.jobs)
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if embedded:
            stop_embedded(data_dir)
    print(f"defer -> start, worker polling every {args.poll:g} s:")
    print(summary("LISTEN/NOTIFY", notified))
    print(summary("polling only", polled))


if __name__ == "__main__":
    asyncio.run(main())
