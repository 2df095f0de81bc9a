"""Mixed traffic at the machine's capacity against a real two-worker server: no errors,
no memory growth after warm-up, no connection leaks. `make soak` runs the same for longer
(benchmarks/soak.py) and reports the figures."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.harness import (
    EmbeddedPostgres,
    accounts_with_stores,
    serving,
)
from testkit.load import (
    CONNECTION,
    ERROR,
    UNAVAILABLE,
    run_load,
    settle,
    summary,
    wait_until_idle,
)
from tests.reliability.conftest import own_database_only

pytestmark = [pytest.mark.reliability, own_database_only]

SECONDS = 35.0
WARMUP_SECONDS = 10.0
WORKERS = 2
# A small pool, so the load (21 users at once) queues for connections and the limit is
# really put to the test: never more than WORKERS x (POOL + OVERFLOW) connections.
POOL, OVERFLOW = 4, 4
RSS_GROWTH_LIMIT_MB = 10.0


async def test_mixed_load_has_no_errors_no_memory_growth_and_no_connection_leaks(
    embedded: EmbeddedPostgres, owner_engine: AsyncEngine
) -> None:
    env = {"ASTRA_DB_POOL_SIZE": str(POOL), "ASTRA_DB_MAX_OVERFLOW": str(OVERFLOW)}
    with serving(embedded.data_dir, workers=WORKERS, env=env) as server:
        accounts = await accounts_with_stores(
            server, owner_engine, sellers=6, admins=1, prefix="load"
        )
        run = await run_load(
            server,
            owner_engine,
            accounts,
            seconds=SECONDS,
            users_per_account=3,
            pool_limit=WORKERS * (POOL + OVERFLOW),
        )
        after = await wait_until_idle(owner_engine, within=5)
        await settle(run, owner_engine, accounts)
        for account in accounts:
            await account.client.aclose()
    print("\n" + summary(run, warmup=WARMUP_SECONDS))

    tally = run.tally
    assert tally.total(ERROR) == tally.total(UNAVAILABLE) == tally.total(CONNECTION) == 0, (
        tally.failures[:5]
    )
    assert tally.total() > 20 * SECONDS, "too little traffic to prove anything"
    growth = run.rss_growth_mb(WARMUP_SECONDS)
    assert all(mb < RSS_GROWTH_LIMIT_MB for mb in growth.values()), growth
    assert run.max_connections() <= run.pool_limit
    # Afterwards every connection is back in its pool, idle, at most the pools' size.
    assert set(after) <= {"idle"}, after
    assert sum(after.values()) <= WORKERS * POOL
    # Every 2xx was durable.
    assert run.deliveries_ok_stored == len(run.deliveries_ok) > 0
    assert run.kept_missing == 0
