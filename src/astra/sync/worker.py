"""Queue workers: one inside each `astra serve` process (started by the app's lifespan), or
`astra worker` on its own, on as many hosts as needed; they share the queue through the
database, so each job runs once wherever it is picked up.

A worker is stopped by cancelling it: running jobs get ASTRA_WORKER_SHUTDOWN_SECONDS to
finish, then they are cancelled and go back to the queue (BackToQueueWhenInterrupted) for the
next worker. A worker the database drops (an outage) is started again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

import procrastinate
from procrastinate.app import WorkerOptions

from astra.db.session import Database
from astra.db.urls import app_url
from astra.settings import Settings
from astra.sync.queue import ORPHANS_ONLY, behind_pooler, job_app, open_queue, retry_stalled_jobs

logger = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 30.0
# Connections the queue itself takes beside its jobs' (fetching, heartbeats, periodic defers).
QUEUE_CONNECTIONS = 2


def worker_options(settings: Settings, *, concurrency: int, name: str) -> WorkerOptions:
    return {
        "name": name,
        "concurrency": concurrency,
        # A pooler in transaction mode drops a LISTEN with its transaction: poll instead.
        "listen_notify": not behind_pooler(settings),
        "fetch_job_polling_interval": settings.worker_poll_seconds,
        "shutdown_graceful_timeout": settings.job_shutdown_seconds,
        "delete_jobs": "successful",
        # Signals belong to whoever runs the worker: uvicorn in `astra serve`, run_alone here.
        "install_signal_handlers": False,
        "update_heartbeat_interval": settings.worker_stalled_seconds / 3,
        "stalled_worker_timeout": settings.worker_stalled_seconds,
    }


class QueueWorker:
    """One procrastinate worker, kept running until `stop()`."""

    def __init__(self, app: procrastinate.App, options: WorkerOptions) -> None:
        self._app = app
        self._options = options
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue worker")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_DELAY_SECONDS
        while True:
            started = loop.time()
            try:
                await self._app.run_worker_async(**self._options)
            except Exception:
                if self._stopping:
                    return
                logger.exception("The queue worker failed; it starts again")
            else:
                # Only a failed side task (heartbeat, listener) stops it on its own.
                logger.warning("The queue worker stopped; it starts again")
            if loop.time() - started > MAX_RESTART_DELAY_SECONDS:
                delay = RESTART_DELAY_SECONDS
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS)

    async def stop(self) -> None:
        """Stop taking jobs, let running ones finish (or hand them back after the shutdown
        timeout), then unregister."""
        if self._task is None:
            return
        self._stopping = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        # A job handed back while the same job already waited could not go back (its
        # queueing lock): it is left `doing`, of no worker. End it now, not a stalled-job
        # tick after the next worker starts, so the waiting one may run.
        try:
            await retry_stalled_jobs(self._app, stalled_seconds=ORPHANS_ONLY)
        except Exception:
            logger.warning("Could not check for jobs left behind", exc_info=True)

    def hurry(self) -> None:
        """While stopping: hand the running jobs back now rather than wait for them."""
        if self._task is not None:
            self._task.cancel()


_in_process: QueueWorker | None = None


def start_in_process(app: procrastinate.App, settings: Settings) -> QueueWorker:
    """The one worker of this app process (`astra serve`, every uvicorn worker process)."""
    global _in_process
    if _in_process is not None:
        raise RuntimeError("this process already runs its queue worker")
    options = worker_options(settings, concurrency=settings.worker_concurrency, name="in-process")
    _in_process = QueueWorker(app, options)
    _in_process.start()
    return _in_process


async def stop_in_process() -> None:
    global _in_process
    worker, _in_process = _in_process, None
    if worker is not None:
        await worker.stop()


async def run_alone(
    settings: Settings,
    *,
    concurrency: int,
    build: Callable[[Settings, Database], procrastinate.App] = job_app,
) -> None:
    """`astra worker`: one worker running `concurrency` jobs at once, until SIGINT or
    SIGTERM (a second one cancels the running jobs without waiting). `build` makes the
    App (tests add tasks of their own to it)."""
    database = Database(app_url(settings), pool_size=concurrency, max_overflow=0)
    app = build(settings, database)
    try:
        async with open_queue(app, settings, max_connections=concurrency + QUEUE_CONNECTIONS):
            options = worker_options(settings, concurrency=concurrency, name="worker")
            worker = QueueWorker(app, options)
            stop_requested = asyncio.Event()

            def on_signal() -> None:
                if stop_requested.is_set():
                    worker.hurry()
                stop_requested.set()

            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, on_signal)
            worker.start()
            await stop_requested.wait()
            await worker.stop()
    finally:
        await database.dispose()
