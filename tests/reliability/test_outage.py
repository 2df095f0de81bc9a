"""PostgreSQL stops under load and starts again; the running server must ride it out.

A real `astra serve` process, signed-in sellers and an admin listing, creating, editing
and deleting, and their stores sending signed deliveries with unique ids, all at once,
while the test stops the server's own embedded PostgreSQL for a few seconds.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.harness import (
    EmbeddedPostgres,
    accounts_with_stores,
    existing_integration_ids,
    new_client,
    serving,
    stored_delivery_ids,
)
from testkit.load import (
    CONNECTION,
    ERROR,
    OK,
    UNAVAILABLE,
    Tally,
    virtual_user,
)
from tests.reliability.conftest import own_database_only

pytestmark = [pytest.mark.reliability, own_database_only]

BEFORE_SECONDS = 3.0
OUTAGE_SECONDS = 4.0
# Traffic goes on this long after PostgreSQL accepts connections again; within the first
# RECOVERY_SECONDS of it, requests must be succeeding again.
AFTER_SECONDS = 6.0
RECOVERY_SECONDS = 3.0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_database_outage_is_503s_then_recovery_and_no_2xx_delivery_is_lost(
    embedded: EmbeddedPostgres, owner_engine: AsyncEngine, mode: str
) -> None:
    with serving(embedded.data_dir) as server:
        worker = server.worker_pids()
        accounts = await accounts_with_stores(
            server, owner_engine, sellers=4, admins=1, prefix=f"outage-{mode}"
        )
        tally = Tally(keep_timeline=True)
        done = asyncio.Event()
        # A ceiling only: `done` ends the traffic AFTER_SECONDS after PostgreSQL is back.
        deadline = time.monotonic() + 60
        async with new_client(server.base_url) as stores_client:
            traffic = asyncio.gather(
                *(
                    virtual_user(
                        account,
                        stores_client,
                        tally,
                        deadline=deadline,
                        max_requests=20_000,
                        seed=n,
                        stop=done,
                    )
                    for n, account in enumerate(accounts * 2)
                )
            )
            await asyncio.sleep(BEFORE_SECONDS)
            stopping = time.monotonic()
            await asyncio.to_thread(embedded.stop, mode)
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(embedded.start)
            ready = time.monotonic()
            await asyncio.sleep(AFTER_SECONDS)
            done.set()
            await traffic

        # The very same server process, never restarted, answers everything again.
        assert server.process.poll() is None
        assert server.worker_pids() == worker
        for account in accounts:
            assert (await account.client.get("/api/integrations")).status_code == 200
            await account.client.aclose()
        log = server.log_text()

    await owner_engine.dispose()  # its pooled connection died with the server
    stores = [store for account in accounts for store in account.stores]
    stored = await stored_delivery_ids(owner_engine, stores)
    kept = sorted(tally.kept)
    existing = await existing_integration_ids(owner_engine, kept)

    timeline = tally.timeline
    failed_during = [t for t, _, o in timeline if o != OK and stopping <= t]
    late_failures = [
        (t - ready, k, o) for t, k, o in timeline if o != OK and t > ready + RECOVERY_SECONDS
    ]
    ok_after = [t for t, _, o in timeline if o == OK and t > ready]
    first_ok_ms = (min(ok_after, default=float("inf")) - ready) * 1000
    delivered = {d for d, outcome in tally.deliveries.items() if outcome == OK}
    # The figures RELIABILITY.md quotes (pytest -s shows them).
    print(
        f"\n{mode} stop, {OUTAGE_SECONDS:.0f} s down: {tally.total()} requests, "
        f"{tally.total(OK)} ok, {tally.total(UNAVAILABLE)} 503, {tally.total(CONNECTION)} "
        f"connection errors, {tally.total(ERROR)} other; slowest 503 "
        f"{tally.slowest_ms.get(UNAVAILABLE, 0):.0f} ms; first success {first_ok_ms:.0f} ms "
        f"after PostgreSQL was ready; deliveries {len(tally.deliveries)}: {len(delivered)} "
        f"answered 2xx, {len(delivered & stored)} of those stored; "
        f"{len((set(tally.deliveries) - delivered) & stored)} stored although not answered 2xx"
    )

    # Every answer was a success or a clear, retryable 503: no 500, no traceback, no HTML.
    assert tally.total(ERROR) == 0, tally.failures[:5]
    assert "Exception in ASGI application" not in log
    # The outage really happened under traffic, and traffic went on after it.
    assert failed_during, "no request met the outage"
    assert not late_failures, late_failures[:10]
    assert first_ok_ms < RECOVERY_SECONDS * 1000
    assert len(ok_after) > 20

    # Every delivery answered 2xx is stored; every one not stored was told so (5xx or a
    # dropped connection), so the store sends it again.
    assert tally.deliveries
    assert delivered <= stored
    for delivery_id, outcome in tally.deliveries.items():
        if delivery_id not in stored:
            assert outcome in (UNAVAILABLE, CONNECTION), (delivery_id, outcome)
    # The same for creates: a 201 is a store connection that exists afterwards.
    assert set(kept) == existing
