"""A job acts as its integration's owner, so row-level security alone keeps it to that
seller's rows: what seller A's job reads, writes and changes, run by a real worker."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import procrastinate
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.session import Database
from astra.sync.owner import IntegrationGone, acting_for
from astra.sync.worker import worker_options
from tests.conftest import TestDatabase
from tests.sync.conftest import add_deliveries, delivery_ids, seller_with_store

INSERT_DELIVERY = text(
    "INSERT INTO public.webhook_deliveries (integration_id, delivery_id, user_id, topic,"
    " outcome, body_bytes) VALUES (:integration_id, :delivery, :user_id, 'order.updated',"
    " 'stored', 1)"
)


@pytest.fixture
async def sellers(owner_engine: AsyncEngine, password_hash: str) -> dict[str, uuid.UUID]:
    alice, alice_shop = await seller_with_store(owner_engine, "alice@example.com", password_hash)
    bob, bob_shop = await seller_with_store(owner_engine, "bob@example.com", password_hash)
    await add_deliveries(owner_engine, alice_shop, alice, [timedelta(hours=1)])
    await add_deliveries(owner_engine, bob_shop, bob, [timedelta(hours=1)])
    return {"alice": alice, "alice_shop": alice_shop, "bob": bob, "bob_shop": bob_shop}


async def test_a_job_for_one_seller_reaches_only_that_sellers_rows(
    test_database: TestDatabase,
    jobs: procrastinate.App,
    database: Database,
    owner_engine: AsyncEngine,
    sellers: dict[str, uuid.UUID],
) -> None:
    seen: dict[str, Any] = {}

    @jobs.task(name="test.as_owner")
    async def as_owner(integration_id: str) -> None:
        async with acting_for(database, uuid.UUID(integration_id)) as owner:
            seen["owner"] = owner.owner_id
            seen["integrations"] = set(
                (await owner.db.execute(text("SELECT id FROM public.integrations"))).scalars()
            )
            seen["deliveries"] = set(
                (
                    await owner.db.execute(text("SELECT user_id FROM public.webhook_deliveries"))
                ).scalars()
            )
            # Bob's delivery is invisible, so changing it changes nothing.
            changed = await owner.db.execute(
                text(
                    "UPDATE public.webhook_deliveries SET outcome = 'ignored'"
                    " WHERE integration_id = :id"
                ),
                {"id": sellers["bob_shop"]},
            )
            seen["bob_rows_changed"] = changed.rowcount
            await owner.db.execute(
                INSERT_DELIVERY,
                {
                    "integration_id": sellers["alice_shop"],
                    "delivery": "by-job",
                    "user_id": sellers["alice"],
                },
            )
        # Writing a row of Bob's store in Bob's name is refused by the policy itself.
        with pytest.raises(DBAPIError, match="row-level security"):
            async with acting_for(database, uuid.UUID(integration_id)) as owner:
                await owner.db.execute(
                    INSERT_DELIVERY,
                    {
                        "integration_id": sellers["bob_shop"],
                        "delivery": "forged",
                        "user_id": sellers["bob"],
                    },
                )
        seen["done"] = True

    await jobs.configure_task("test.as_owner").defer_async(
        integration_id=str(sellers["alice_shop"])
    )
    await jobs.run_worker_async(
        **worker_options(test_database.settings, concurrency=1, name="test"), wait=False
    )

    assert seen["done"]
    assert seen["owner"] == sellers["alice"]
    assert seen["integrations"] == {sellers["alice_shop"]}
    assert seen["deliveries"] == {sellers["alice"]}
    assert seen["bob_rows_changed"] == 0
    stored = await delivery_ids(owner_engine)
    assert stored[sellers["alice_shop"]] == {"0-1h", "by-job"}
    assert stored[sellers["bob_shop"]] == {"0-1h"}
    async with owner_engine.connect() as connection:
        outcomes = set(
            (
                await connection.execute(text("SELECT outcome FROM public.webhook_deliveries"))
            ).scalars()
        )
    assert outcomes == {"stored"}


async def test_a_failed_job_leaves_nothing_behind(
    database: Database, owner_engine: AsyncEngine, sellers: dict[str, uuid.UUID]
) -> None:
    with pytest.raises(RuntimeError):
        async with acting_for(database, sellers["alice_shop"]) as owner:
            await owner.db.execute(
                INSERT_DELIVERY,
                {
                    "integration_id": sellers["alice_shop"],
                    "delivery": "half",
                    "user_id": sellers["alice"],
                },
            )
            raise RuntimeError("the store went away")
    assert (await delivery_ids(owner_engine))[sellers["alice_shop"]] == {"0-1h"}


async def test_a_deleted_integration_has_no_owner_to_act_as(database: Database) -> None:
    gone = uuid.uuid4()
    with pytest.raises(IntegrationGone) as raised:
        async with acting_for(database, gone):
            pytest.fail("the block must not run")
    assert raised.value.integration_id == gone
