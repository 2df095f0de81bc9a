"""/healthz and /readyz on the app: liveness without the database, readiness only with a
database that answers at this code's schema revision; neither logged, counted or Host-checked."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from astra.db import migrate
from astra.ops import NOT_MIGRATED, samples, schema_revisions
from testkit.processes import free_port
from tests.conftest import TestDatabase, _create_database, client_for, running
from tests.ops.conftest import METRICS_TOKEN


async def test_healthz_and_readyz_answer_200_on_a_migrated_database(
    anonymous: httpx.AsyncClient,
) -> None:
    health = await anonymous.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await anonymous.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert ready.headers["cache-control"] == "no-store"
    assert (await anonymous.head("/readyz")).status_code == 200
    assert (await anonymous.post("/healthz")).status_code == 405


@pytest.fixture
async def app_without_database(test_database: TestDatabase) -> AsyncIterator[FastAPI]:
    """The app on a server that is not there: nothing listens on the port."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/astra"
    settings = test_database.settings.model_copy(update={"database_url": url})
    async with running(settings) as application:
        yield application


async def test_without_a_database_the_process_is_alive_but_not_ready(
    app_without_database: FastAPI,
) -> None:
    async with client_for(app_without_database) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "reason": "The database is unavailable."}


@pytest.fixture(scope="module")
def older_database(test_database: TestDatabase) -> TestDatabase:
    """A database of its own, migrated only to 0008 (the revision before the last)."""
    name = f"astra_older_{uuid.uuid4().hex[:8]}"
    _create_database(test_database.owner_url, name)
    url = test_database.owner_url.set(database=name)
    settings = test_database.settings.model_copy(
        update={"database_url": url.render_as_string(hide_password=False)}
    )
    migrate.upgrade(settings, "0008")
    return TestDatabase(settings=settings, owner_url=url)


async def _readyz(database: TestDatabase) -> httpx.Response:
    async with running(database.settings) as application, client_for(application) as client:
        return await client.get("/readyz")


async def _set_revision(database: TestDatabase, revision: str) -> None:
    engine = create_async_engine(database.owner_url)
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE alembic_version SET version_num = :v"), {"v": revision}
        )
    await engine.dispose()


async def test_a_database_at_an_older_revision_is_not_ready(older_database: TestDatabase) -> None:
    ready = await _readyz(older_database)
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "reason": NOT_MIGRATED}


async def test_a_migration_behind_is_not_ready_one_ahead_is_and_migrating_makes_it_ready(
    older_database: TestDatabase,
) -> None:
    """Behind, this code would miss what it needs: not ready. Ahead (a revision this code
    doesn't know) is what every rolling deploy makes: the first new process migrates while
    the old ones still serve. Were they unready then, the load balancer would take the whole
    old fleet out at once, before any new process is up."""
    await asyncio.to_thread(migrate.upgrade, older_database.settings)
    assert (await _readyz(older_database)).status_code == 200
    (head,) = schema_revisions().heads
    try:
        # The schema as it is, but the record says a migration is missing.
        await _set_revision(older_database, "0008")
        behind = await _readyz(older_database)
        await _set_revision(older_database, "9999")
        unknown = await _readyz(older_database)
    finally:
        await _set_revision(older_database, head)
    assert (behind.status_code, behind.json()["reason"]) == (503, NOT_MIGRATED)
    assert (unknown.status_code, unknown.json()) == (200, {"status": "ready"})
    assert (await _readyz(older_database)).status_code == 200


async def test_probes_answer_any_host_and_are_neither_logged_nor_counted(
    metrics_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    lb = {"host": "10.1.2.3:8000"}
    with caplog.at_level(logging.INFO, logger="astra.access"):
        assert (await metrics_client.get("/healthz", headers=lb)).status_code == 200
        assert (await metrics_client.get("/readyz", headers=lb)).status_code == 200
        # Any other route from that Host is refused, and logged.
        assert (await metrics_client.get("/api/auth/me", headers=lb)).status_code == 400
    logged = [record.path for record in caplog.records if record.name == "astra.access"]  # type: ignore[attr-defined]
    assert logged == ["/api/auth/me"]
    scraped = await metrics_client.get(
        "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
    )
    routes = {labels.get("route") for _, labels, _ in samples(scraped.text)}
    assert "unmatched" in routes
    assert not routes & {"/healthz", "/readyz", "/metrics"}
