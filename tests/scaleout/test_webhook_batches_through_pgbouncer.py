"""Group commit behind a transaction pooler: a batch of deliveries of two sellers, each
statement acting as its own owner, in one transaction on a pooled server connection with
no named prepared statements."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.stores import Store, connect_store, orders_of, send_order
from tests.conftest import Account, TestDatabase, client_for, running
from tests.scaleout.pgbouncer import PgBouncer, pgbouncer_binary, running_pgbouncer

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.skipif(pgbouncer_binary() is None, reason="needs Debian's pgbouncer"),
]


@pytest.fixture
def bouncer(test_database: TestDatabase) -> Iterator[PgBouncer]:
    with running_pgbouncer(
        make_url(test_database.settings.database_url),
        app_password=test_database.settings.resolved_app_db_password,
        pool_size=2,
    ) as running_bouncer:
        yield running_bouncer


async def test_a_batch_of_two_sellers_commits_once_through_pgbouncer(
    test_database: TestDatabase,
    bouncer: PgBouncer,
    owner_engine: AsyncEngine,
    seller: Account,
    other_seller: Account,
) -> None:
    stores: list[Store] = [
        await connect_store(seller, "shopify", "pooled-one.myshopify.com"),
        await connect_store(other_seller, "shopify", "pooled-two.myshopify.com"),
    ]
    settings = test_database.settings.model_copy(
        update={"db_pooler_url": bouncer.url(), "webhook_batch_ms": 300.0}
    )
    async with running(settings) as app, client_for(app) as client:
        responses = await asyncio.gather(*(send_order(client, stores[n % 2], n) for n in range(8)))
        assert [r.json() for r in responses] == [{"outcome": "stored"}] * 8
        counts = app.state.webhook_batcher.counts
        assert (counts.batches, counts.committed, counts.alone) == (1, 1, 0)
    for store in stores:
        assert len(await orders_of(owner_engine, store)) == 4
