"""Sync import: orders imported per second from a simulated store of 100,000 orders, and the
memory the importing process takes.

    .venv/bin/python -m benchmarks.sync_import [--orders 100000] [--platform woocommerce]
    .venv/bin/python -m benchmarks.sync_import --platform shopify --bulk

The simulated store (testkit.simulators, its orders placed over a year) runs in a process
of its own, over HTTPS on 127.0.0.1, so that this process is Astra's alone: one
`astra.sync.engine.run_sync`, the first sync of the store, as the runtime role acting as
its owner, on a fresh migrated database (DATABASE_URL's server when set, else an embedded
PostgreSQL in a temporary directory). Prints the orders imported, the wall time and orders
per second, the CPU seconds of this process, of the PostgreSQL backends serving it (found
by their process title, when the server runs on this machine) and of the store, and this
process's RSS before the sync and at its peak during it (sampled every 50 ms).

WooCommerce lists 100 orders a page. Shopify's simulated cost limit is lifted for the run
(`--platform shopify`): at a real store's 100 points a second a page of 100 orders costs
3 s, and a store this size wants a bulk operation instead. `--bulk` takes that path (the
bulk threshold set to 0; without it, paging whatever the size): the simulated store works
the query out in the background and serves the JSONL from its simulated cloud storage host,
which this process resolves to 127.0.0.1. Printed besides: how long Shopify's side took
(start to the first committed batch) and the import's own rate after it (download, parse,
write), the figure that says what Astra does with a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from astra.auth.passwords import hash_password
from astra.crypto import encrypt
from astra.db import migrate
from astra.db.embedded import embedded_database_url, stop_embedded
from astra.db.session import Database
from astra.db.urls import app_url
from astra.settings import Settings
from astra.sync.engine import run_sync
from astra.sync.state import SyncState
from testkit.simulators.server import StoreServer
from testkit.simulators.shopify import SimulatedShopify
from testkit.simulators.woocommerce import SimulatedWooCommerce
from testkit.sync_process import loopback_only, storage_at_loopback

SELLER = "seller@sync.example"


# --- the store's process --------------------------------------------------------------


async def serve_store(directory: Path, platform: str, orders: int) -> None:
    """Seed the store, say where it is on stdout (one JSON line), serve until stdin closes."""
    async with StoreServer.running(directory) as server:
        if platform == "shopify":
            shop = server.add(SimulatedShopify("bench-sync.myshopify.com", order_count=0))
            shop.maximum_available = shop.currently_available = 1e12
            shop.restore_rate = 1e12
            shop.bulk_seconds = 0.0
            app = shop.install_app(["read_orders", "read_all_orders"])
            credentials = {"client_id": app.client_id, "client_secret": app.client_secret}
            kind, store = "shopify_app", shop
        else:
            woo = server.add(SimulatedWooCommerce("bench-sync.example.com", order_count=0))
            key = woo.add_key("read")
            credentials = {"consumer_key": key.consumer_key, "consumer_secret": key.consumer_secret}
            kind, store = "woocommerce_key", woo
        store.seed(orders, days=365)
        where = {
            "url_template": server.url_template,
            "ca_file": str(server.ca_file),
            "domain": store.domain,
            "kind": kind,
            "credentials": credentials,
        }
        print(json.dumps(where), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- Astra's process ------------------------------------------------------------------


async def create_database(server: URL, name: str, *, drop: bool = False) -> None:
    engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        statement = (
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            if drop
            else f'CREATE DATABASE "{name}"'
        )
        await connection.execute(text(statement))
    await engine.dispose()


async def connect_store(
    owner: URL, settings: Settings, platform: str, where: dict[str, Any]
) -> uuid.UUID:
    """A seller and their integration of the store, with its API credentials, as the owner."""
    engine = create_async_engine(owner)
    async with engine.begin() as connection:
        user_id = (
            await connection.execute(
                text("SELECT public.app_create_user(:email, :hash, 'seller')"),
                {"email": SELLER, "hash": hash_password("benchmark password")},
            )
        ).scalar_one()
        integration_id = (
            await connection.execute(
                text(
                    "INSERT INTO integrations (user_id, name, type, domain, webhook_secret, "
                    "credentials_kind, credentials) VALUES (:user_id, 'Bench store', :type, "
                    ":domain, :secret, :kind, :credentials) RETURNING id"
                ),
                {
                    "user_id": user_id,
                    "type": platform,
                    "domain": where["domain"],
                    "secret": encrypt(settings.encryption_key, "s" * 43),
                    "kind": where["kind"],
                    "credentials": encrypt(
                        settings.encryption_key, json.dumps(where["credentials"])
                    ),
                },
            )
        ).scalar_one()
    await engine.dispose()
    assert isinstance(integration_id, uuid.UUID)
    return integration_id


def backends(database_name: str) -> list[psutil.Process]:
    """This machine's PostgreSQL backends serving `database_name` (by their process title)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or ())
        if title.startswith("postgres:") and f" {database_name} " in title:
            found.append(process)
    return found


async def import_orders(
    settings: Settings,
    integration_id: uuid.UUID,
    database_name: str,
    marks: list[tuple[float, int]],
) -> tuple[SyncState, float, float, float, int, int]:
    """The sync, timed: (its end state, wall seconds, CPU seconds of this process and of
    the PostgreSQL backends serving it, RSS before, peak RSS). `marks` gets the time of
    each committed state, with the number of orders in so far."""
    me = psutil.Process()
    database = Database(app_url(settings), pool_size=2, max_overflow=0)
    before = peak = me.memory_info().rss
    running = True
    backend_cpu: dict[int, float] = {}

    def count_backends() -> None:
        for backend in backends(database_name):
            with contextlib.suppress(psutil.Error):
                backend_cpu[backend.pid] = sum(backend.cpu_times()[:2])

    async def sample() -> None:
        nonlocal peak
        for tick in itertools.count():
            if not running:
                return
            peak = max(peak, me.memory_info().rss)
            if tick % 20 == 0:  # every second: walking every process costs CPU too
                count_backends()
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    cpu = me.cpu_times()
    started = time.perf_counter()

    async def progress(state: SyncState) -> None:
        marks.append((time.perf_counter() - started, state.imported))

    try:
        done = await run_sync(
            database,
            settings,
            integration_id,
            progress=progress,
            resolver=storage_at_loopback,
            address_allowed=loopback_only,
        )
    finally:
        wall = time.perf_counter() - started
        used = me.cpu_times()
        running = False
        await sampler
        count_backends()
        await database.dispose()
    ours = (used.user - cpu.user) + (used.system - cpu.system)
    return done, wall, ours, sum(backend_cpu.values()), before, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--platform", choices=["woocommerce", "shopify"], default="woocommerce")
    parser.add_argument("--bulk", action="store_true", help="Shopify: by a bulk operation")
    parser.add_argument("--serve-store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_store:
        asyncio.run(serve_store(args.serve_store, args.platform, args.orders))
        return 0

    with tempfile.TemporaryDirectory(prefix="astra-sync-bench-") as tmp:
        data_dir = Path(tmp)
        seeding = time.perf_counter()
        store = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.sync_import",
                "--serve-store",
                tmp,
                "--platform",
                args.platform,
                "--orders",
                str(args.orders),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        embedded = os.environ.get("DATABASE_URL") is None
        raw = embedded_database_url(data_dir) if embedded else os.environ["DATABASE_URL"]
        server = make_url(raw).set(drivername="postgresql+asyncpg")
        name = f"astra_sync_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(create_database(server, name))
        try:
            assert store.stdout is not None
            where = json.loads(store.stdout.readline())
            print(
                f"store of {args.orders:,} orders ({args.platform}) ready in {time.perf_counter() - seeding:.1f} s"
            )
            owner = server.set(database=name)
            settings = Settings(
                database_url=owner.render_as_string(hide_password=False),
                data_dir=data_dir,
                store_api_url=where["url_template"],
                store_ca_bundle=Path(where["ca_file"]),
                sync_bulk_threshold=0 if args.bulk else 2**31 - 1,
            )
            migrate.upgrade(settings)
            integration_id = asyncio.run(connect_store(owner, settings, args.platform, where))
            store_cpu = sum(psutil.Process(store.pid).cpu_times()[:2])
            marks: list[tuple[float, int]] = []
            done, wall, cpu, database_cpu, before, peak = asyncio.run(
                import_orders(settings, integration_id, name, marks)
            )
            store_cpu = sum(psutil.Process(store.pid).cpu_times()[:2]) - store_cpu
        finally:
            store.terminate()
            store.wait(timeout=30)
            asyncio.run(create_database(server, name, drop=True))
            if embedded:
                stop_embedded(data_dir)
    print(f"state {done.state}, imported {done.imported:,} of {done.total}, error {done.error}")
    print(f"wall {wall:.1f} s: {done.imported / wall:,.0f} orders/s")
    print(
        f"CPU: this process {cpu:.1f} s ({cpu / max(done.imported, 1) * 1e6:.0f} us an order), "
        f"its PostgreSQL backends {database_cpu:.1f} s, the store {store_cpu:.1f} s"
    )
    print(f"RSS: {before / 2**20:.0f} MiB before the sync, {peak / 2**20:.0f} MiB at its peak")
    if args.bulk and len(marks) > 2:
        # marks[0]: the operation started; marks[1]: the first batch committed.
        (first_at, first_in), (last_at, last_in) = marks[1], marks[-1]
        print(
            f"bulk: Shopify's side (start to first batch) {first_at:.1f} s; the import after "
            f"it {(last_in - first_in) / max(last_at - first_at, 1e-9):,.0f} orders/s"
        )
    return 0 if done.imported == args.orders else 1


if __name__ == "__main__":
    sys.exit(main())
