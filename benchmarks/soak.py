"""`make soak`: minutes of mixed traffic (lists, creates, edits, deletes, webhook
deliveries) at the machine's capacity against a real `astra serve --workers 2` on its own
embedded PostgreSQL, then the report's tables: requests by kind, errors, each worker's
RSS, the app role's connections, webhook 2xx against rows stored.

    .venv/bin/python -m benchmarks.soak [--seconds 300] [--workers 2] [--sellers 8] [--users 3]

The same harness (testkit/harness.py, testkit/load.py) as the bounded test
(tests/reliability/test_load.py), run longer. It starts and stops its own PostgreSQL in a
temporary data dir; traffic goes only to 127.0.0.1. Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from astra.settings import Settings
from testkit.harness import EmbeddedPostgres, accounts_with_stores, serving
from testkit.load import (
    CONNECTION,
    ERROR,
    UNAVAILABLE,
    LoadRun,
    run_load,
    settle,
    summary,
    wait_until_idle,
)

# The app's own defaults, what production runs with (set explicitly, so a stray
# ASTRA_DB_* in the environment cannot make the report's limit wrong).
POOL = Settings.model_fields["db_pool_size"].default
OVERFLOW = Settings.model_fields["db_max_overflow"].default
RSS_GROWTH_LIMIT_MB = 20.0


async def soak(data_dir: Path, args: argparse.Namespace) -> tuple[LoadRun, dict[str, int]]:
    database = EmbeddedPostgres(data_dir)
    engine = database.engine()
    try:
        env = {"ASTRA_DB_POOL_SIZE": str(POOL), "ASTRA_DB_MAX_OVERFLOW": str(OVERFLOW)}
        with serving(data_dir, workers=args.workers, env=env) as server:
            accounts = await accounts_with_stores(
                server, engine, sellers=args.sellers, admins=1, prefix="soak"
            )
            print(
                f"Serving on {server.base_url} ({args.workers} workers); "
                f"{len(accounts) * args.users} virtual users for {args.seconds:.0f} s...",
                flush=True,
            )
            run = await run_load(
                server,
                engine,
                accounts,
                seconds=args.seconds,
                users_per_account=args.users,
                pool_limit=args.workers * (POOL + OVERFLOW),
            )
            after = await wait_until_idle(engine, within=10)
            await settle(run, engine, accounts)
            for account in accounts:
                await account.client.aclose()
        return run, dict(after)
    finally:
        await engine.dispose()
        database.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sellers", type=int, default=8, help="sellers (plus one admin)")
    parser.add_argument("--users", type=int, default=3, help="virtual users per account")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before RSS counts")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="astra-soak-"))
    started = time.monotonic()
    try:
        run, after = asyncio.run(soak(data_dir, args))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    warmup = min(args.warmup, args.seconds / 2)
    growth = run.rss_growth_mb(warmup)
    failures = sum(run.tally.total(o) for o in (ERROR, UNAVAILABLE, CONNECTION))
    idle = set(after) <= {"idle"}
    checks = {
        "no failed request": failures == 0,
        f"RSS growth after warm-up under {RSS_GROWTH_LIMIT_MB:.0f} MB per worker": all(
            mb < RSS_GROWTH_LIMIT_MB for mb in growth.values()
        ),
        "connections never above the pool limit": run.max_connections() <= run.pool_limit,
        "connections idle afterwards, within the pools' size": idle
        and sum(after.values()) <= args.workers * POOL,
        "every 2xx delivery stored": run.deliveries_ok_stored == len(run.deliveries_ok),
        "every 201 integration not deleted exists": run.kept_missing == 0,
    }
    print()
    print(summary(run, warmup=warmup))
    print(f"Connections after the traffic: {after or 'none'}.")
    print(
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}; load average at the end {os.getloadavg()[0]:.1f}; "
        f"whole run {time.monotonic() - started:.0f} s."
    )
    print()
    for name, held in checks.items():
        print(f"  {'held' if held else 'FAILED'}: {name}")
    for example in run.tally.failures[:5]:
        print(f"  example failure: {example}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
