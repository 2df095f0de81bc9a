"""The job queue's fixtures: the runtime role's engine, the job App on the test database,
an empty queue for every test, and stores with deliveries of a chosen age."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import procrastinate
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.session import Database
from astra.db.urls import app_url
from astra.sync.queue import job_app, open_queue
from tests.conftest import TestDatabase, make_user

QUEUE_TABLES = (
    "procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, procrastinate_workers"
)


@pytest.fixture(autouse=True)
async def empty_queue(owner_engine: AsyncEngine) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {QUEUE_TABLES} CASCADE"))


@pytest.fixture
async def database(test_database: TestDatabase) -> AsyncIterator[Database]:
    """The runtime role's engine, as a worker has it."""
    db = Database(app_url(test_database.settings), pool_size=4, max_overflow=0)
    yield db
    await db.dispose()


@pytest.fixture
async def jobs(test_database: TestDatabase, database: Database) -> AsyncIterator[procrastinate.App]:
    app = job_app(test_database.settings, database)
    async with open_queue(app, test_database.settings, max_connections=4):
        yield app


async def seller_with_store(
    owner_engine: AsyncEngine, email: str, password_hash: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """A seller and one WooCommerce store of theirs: (user id, integration id)."""
    user_id = await make_user(owner_engine, email, "seller", password_hash)
    async with owner_engine.begin() as connection:
        integration_id = (
            await connection.execute(
                text(
                    "INSERT INTO public.integrations (user_id, name, type, domain, webhook_secret)"
                    " VALUES (:user_id, 'Shop', 'woocommerce', :domain, repeat('s', 32))"
                    " RETURNING id"
                ),
                {"user_id": user_id, "domain": email.split("@")[0] + ".example.com"},
            )
        ).scalar_one()
    return user_id, integration_id


async def add_deliveries(
    owner_engine: AsyncEngine, integration_id: uuid.UUID, user_id: uuid.UUID, ages: list[timedelta]
) -> None:
    """One delivery per age, received that long ago; its id says its age in hours."""
    async with owner_engine.begin() as connection:
        for n, age in enumerate(ages):
            await connection.execute(
                text(
                    "INSERT INTO public.webhook_deliveries (integration_id, delivery_id, user_id,"
                    " topic, outcome, body_bytes, received_at) VALUES (:integration_id, :delivery,"
                    " :user_id, 'order.updated', 'stored', 10, now() - CAST(:age AS interval))"
                ),
                {
                    "integration_id": integration_id,
                    "delivery": f"{n}-{age.total_seconds() / 3600:g}h",
                    "user_id": user_id,
                    "age": age,
                },
            )


async def delivery_ids(owner_engine: AsyncEngine) -> dict[uuid.UUID, set[str]]:
    async with owner_engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT integration_id, delivery_id FROM public.webhook_deliveries")
            )
        ).all()
    found: dict[uuid.UUID, set[str]] = {}
    for row in rows:
        found.setdefault(row.integration_id, set()).add(row.delivery_id)
    return found
