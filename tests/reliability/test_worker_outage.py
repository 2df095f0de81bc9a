"""The in-process queue worker of `astra serve` outlives a database outage: the database
drops it, it starts again, and jobs deferred after the outage run."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.session import Database
from astra.db.urls import app_url
from astra.settings import Settings
from astra.sync.queue import PRUNE_DELIVERIES, job_app, open_queue
from testkit.harness import EmbeddedPostgres, serving
from tests.reliability.conftest import own_database_only

pytestmark = [pytest.mark.reliability, own_database_only]


async def workers_beating(owner_engine: AsyncEngine) -> int:
    async with owner_engine.connect() as connection:
        return int(
            await connection.scalar(
                text(
                    "SELECT count(*) FROM procrastinate_workers"
                    " WHERE last_heartbeat > now() - interval '15 seconds'"
                )
            )
        )


async def until(check: object, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if await check():  # type: ignore[operator]
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.2)


async def test_the_in_process_worker_starts_again_after_an_outage(
    embedded: EmbeddedPostgres,
) -> None:
    settings = Settings(
        database_url=embedded.owner_url.render_as_string(hide_password=False),
        data_dir=embedded.data_dir,
    )
    with serving(embedded.data_dir) as server:
        engine = embedded.engine()
        await until(lambda: _one(engine), within=30)
        await engine.dispose()
        await asyncio.to_thread(embedded.stop, "fast")
        await asyncio.sleep(3)
        await asyncio.to_thread(embedded.start)

        engine = embedded.engine()
        database = Database(app_url(settings), pool_size=1, max_overflow=0)
        app = job_app(settings, database)
        try:
            async with open_queue(app, settings, max_connections=2):
                job_id = await app.configure_task(PRUNE_DELIVERIES).defer_async()
                await until(lambda: _done(engine, job_id), within=60)
            assert await workers_beating(engine) == 1
            # The outage did reach it: the database dropped it, and it came back by itself.
            assert "The queue worker stopped; it starts again" in server.log_text()
        finally:
            await database.dispose()
            await engine.dispose()


async def _one(engine: AsyncEngine) -> bool:
    return await workers_beating(engine) == 1


async def _done(engine: AsyncEngine, job_id: int) -> bool:
    async with engine.connect() as connection:
        found = await connection.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
        )
    return found == 0
