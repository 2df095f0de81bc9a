"""`astra worker` with one more task, for tests that need a job to be caught mid-way: the
same worker code (astra.sync.worker.run_alone) on the same App, in a process of its own.

`testkit.hold` holds its first attempt until the worker is stopped or killed; a later
attempt (the job picked up again) returns at once.
"""

from __future__ import annotations

import asyncio
import logging.config

import procrastinate
from procrastinate.job_context import JobContext

from astra.db import migrate
from astra.db.session import Database
from astra.logs import LOG_CONFIG
from astra.settings import Settings
from astra.sync.queue import RETRY_INTERRUPTED, job_app
from astra.sync.worker import run_alone

HOLD = "testkit.hold"


def with_hold(settings: Settings, database: Database) -> procrastinate.App:
    app = job_app(settings, database)

    @app.task(name=HOLD, pass_context=True, retry=RETRY_INTERRUPTED)
    async def hold(context: JobContext) -> int:
        if context.job.attempts == 0:
            await asyncio.sleep(3600)
        return context.job.attempts

    return app


def main() -> None:
    settings = Settings()
    logging.config.dictConfig(LOG_CONFIG)
    migrate.upgrade(settings)
    asyncio.run(run_alone(settings, concurrency=2, build=with_hold))


if __name__ == "__main__":
    main()
