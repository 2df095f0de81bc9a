"""Scale-out as production runs it: two app processes share one PostgreSQL through pgbouncer
in transaction-pooling mode, many client connections on a few server connections.

Sellers and an admin call both processes at once, interleaved, and every response is
checked against what its caller may see. Alongside, probe transactions on the same pooled
server connections check that no user context outlives the transaction that set it, and
that one set inside a transaction holds until its end. Numbers: RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import secrets
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from astra.auth.deps import SESSION_COOKIE
from astra.db import migrate
from astra.settings import Settings
from testkit.processes import HOST, free_port, start_serve, stop, wait_until_serving
from tests.conftest import TestDatabase, _create_database, make_user
from tests.scaleout.pgbouncer import PgBouncer, pgbouncer_binary, running_pgbouncer

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.skipif(
        pgbouncer_binary() is None,
        reason="pgbouncer is not installed: scripts/ensure-system-packages.sh pgbouncer",
    ),
]

APP_PROCESSES = 2
SELLERS = 20
PER_SELLER = 3
REQUESTS = 3000
CONCURRENCY = 64
POOL_SIZE = 4  # pgbouncer's server connections for astra_app
PROBES = 4  # probe connections running beside the load
METRICS_TOKEN = "scaleout-metrics-token-0123456789"


@dataclass(frozen=True)
class Caller:
    id: uuid.UUID
    email: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"cookie": f"{SESSION_COOKIE}={self.token}"}


@dataclass
class World:
    """Who exists and which integration is whose: what every response is checked against."""

    sellers: list[Caller]
    admin: Caller
    owner_of: dict[str, Caller] = field(default_factory=dict)  # integration id -> owner

    def own(self, caller: Caller) -> set[str]:
        return {id_ for id_, owner in self.owner_of.items() if owner == caller}


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    probes: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    max_clients: int = 0
    max_servers: int = 0
    max_backends: int = 0
    samples: int = 0


# Set-up: a fresh database, pgbouncer in front of it, two `astra serve` processes behind it


@pytest.fixture(scope="module")
def scaleout_settings(test_database: TestDatabase) -> Iterator[Settings]:
    """A fresh database on the suite's server, migrated as the owner. Same data dir as the
    suite's database, so the same astra_app password (the role is server-wide)."""
    name = f"astra_scaleout_{uuid.uuid4().hex[:10]}"
    _create_database(test_database.owner_url, name)
    url = test_database.owner_url.set(database=name)
    settings = test_database.settings.model_copy(
        update={"database_url": url.render_as_string(hide_password=False)}
    )
    migrate.upgrade(settings)
    yield settings
    _drop_database(test_database, name)


def _drop_database(test_database: TestDatabase, name: str) -> None:
    async def drop() -> None:
        engine = create_async_engine(
            test_database.owner_url.set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await engine.dispose()

    asyncio.run(drop())


@pytest.fixture(scope="module")
def bouncer(scaleout_settings: Settings) -> Iterator[PgBouncer]:
    assert scaleout_settings.database_url
    with running_pgbouncer(
        make_url(scaleout_settings.database_url),
        app_password=scaleout_settings.resolved_app_db_password,
        pool_size=POOL_SIZE,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def app_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scaleout-logs")


def _tails(logs: Path) -> dict[str, str]:
    return {log.name: log.read_text(errors="replace")[-3000:] for log in sorted(logs.iterdir())}


@pytest.fixture(scope="module")
def app_urls(
    scaleout_settings: Settings, bouncer: PgBouncer, app_logs: Path
) -> Iterator[list[str]]:
    """`astra serve` twice, as production would: migrations (a no-op here) as the owner at
    DATABASE_URL, the runtime role through pgbouncer (ASTRA_DB_POOLER_URL)."""
    assert scaleout_settings.database_url
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ASTRA_") and key != "DATABASE_URL"
    }
    env |= {
        "DATABASE_URL": scaleout_settings.database_url,
        "ASTRA_DATA_DIR": str(scaleout_settings.data_dir),
        "ASTRA_DB_POOLER_URL": bouncer.url(),
        "ASTRA_ACCESS_LOG": "false",
        "ASTRA_METRICS_TOKEN": METRICS_TOKEN,
    }
    with _serving(env, app_logs) as urls:
        yield urls


@contextmanager
def _serving(env: dict[str, str], logs: Path) -> Iterator[list[str]]:
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for index in range(APP_PROCESSES):
            port, log = free_port(), logs / f"app-{index}.log"
            started.append((start_serve(env, port, log), f"http://{HOST}:{port}", log))
        for process, url, log in started:
            wait_until_serving(process, url, log, timeout=60)
        yield [url for _, url, _ in started]
    finally:
        for process, _, _ in started:
            stop(process, timeout=15)


# Seed: accounts and sessions as the owner, integrations through the app (and pgbouncer)


async def _account(
    owner: AsyncEngine, email: str, role: str, password_hash: str, expires: datetime
) -> Caller:
    user_id = await make_user(owner, email, role, password_hash)
    token = secrets.token_urlsafe(32)
    async with owner.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO public.sessions (token_hash, user_id, expires_at) "
                "VALUES (:hash, :user_id, :expires)"
            ),
            {
                "hash": hashlib.sha256(token.encode()).digest(),
                "user_id": user_id,
                "expires": expires,
            },
        )
    return Caller(user_id, email, role, token)


async def _seed(owner: AsyncEngine, clients: list[httpx.AsyncClient], password_hash: str) -> World:
    expires = datetime.now(UTC) + timedelta(hours=1)
    sellers = [
        await _account(owner, f"seller{n:02}@scale.example.com", "seller", password_hash, expires)
        for n in range(SELLERS)
    ]
    admin = await _account(owner, "admin@scale.example.com", "admin", password_hash, expires)
    world = World(sellers, admin)

    async def create(n: int, seller: Caller, k: int) -> None:
        response = await clients[n % len(clients)].post(
            "/api/integrations",
            headers=seller.headers,
            json={
                "name": f"{seller.email} store {k}",
                "type": "woocommerce",
                "domain": f"store{k}.seller{n:02}.example.com",
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()["user_id"] == str(seller.id)
        world.owner_of[response.json()["id"]] = seller

    await asyncio.gather(
        *(create(n, seller, k) for n, seller in enumerate(sellers) for k in range(PER_SELLER))
    )
    assert len(world.owner_of) == SELLERS * PER_SELLER
    return world


# Load: every request's response checked against its caller


def _check(world: World, caller: Caller, kind: str, target: str, response: httpx.Response) -> str:
    """'' when the response is right for this caller, else what is wrong."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    problem = ""
    if kind == "list":
        items = body["items"] if response.status_code == 200 else []
        ids = {item["id"] for item in items}
        expected = set(world.owner_of) if caller.role == "admin" else world.own(caller)
        if response.status_code != 200 or ids != expected or body["next_cursor"] is not None:
            problem = f"list: {len(ids - expected)} foreign, {len(expected - ids)} missing"
        for item in items:
            owner = world.owner_of.get(item["id"])
            if (
                owner is None
                or item["user_id"] != str(owner.id)
                or item["owner_email"] != owner.email
            ):
                problem = f"list: row {item['id']} with the wrong owner"
    elif kind == "me":
        expected_me = {"id": str(caller.id), "email": caller.email, "role": caller.role}
        if response.status_code != 200 or body != expected_me:
            problem = f"me: {response.status_code} {body}"
    elif kind in ("get_own", "put_own", "get_any"):
        owner = world.owner_of[target]
        if (
            response.status_code != 200
            or body["id"] != target
            or body["user_id"] != str(owner.id)
            or body["owner_email"] != owner.email
        ):
            problem = f"{kind}: {response.status_code} {body}"
    elif kind in ("get_foreign", "put_foreign"):
        owner = world.owner_of[target]
        if response.status_code != 403 or owner.email in response.text or target in response.text:
            problem = f"{kind}: {response.status_code} {body}"
    else:
        problem = f"no check for requests of kind {kind!r}"
    return (
        problem
        and f"{caller.email} via {response.request.url.host}:{response.request.url.port} {problem}"
    )


def _plan(world: World, rng: random.Random) -> list[tuple[Caller, str, str]]:
    """REQUESTS (caller, kind, target id) in random order; the admin makes about 1 in 6."""
    callers = [*world.sellers, *[world.admin] * 4]
    ids = list(world.owner_of)
    plan = []
    for _ in range(REQUESTS):
        caller = rng.choice(callers)
        if caller.role == "admin":
            kind = rng.choice(["list", "me", "get_any"])
            target = rng.choice(ids)
        else:
            kind = rng.choice(["list", "me", "get_own", "get_foreign", "put_own", "put_foreign"])
            own = sorted(world.own(caller))
            target = rng.choice(own if kind.endswith("own") else sorted(set(ids) - set(own)))
        plan.append((caller, kind, target))
    return plan


async def _send(
    client: httpx.AsyncClient, caller: Caller, kind: str, target: str, rng: random.Random
) -> httpx.Response:
    if kind == "list":
        return await client.get("/api/integrations?limit=200", headers=caller.headers)
    if kind == "me":
        return await client.get("/api/auth/me", headers=caller.headers)
    if kind.startswith("put"):
        change = {"is_active": rng.random() < 0.5} if kind == "put_own" else {"name": "taken"}
        return await client.put(f"/api/integrations/{target}", headers=caller.headers, json=change)
    return await client.get(f"/api/integrations/{target}", headers=caller.headers)


# Probes: bare transactions see no user; one that sets a user keeps it to its end


async def _probe(url: str, world: World, tally: Tally, stop: asyncio.Event, seed: int) -> None:
    rng = random.Random(seed)
    connection = await asyncpg.connect(url, statement_cache_size=0)
    try:
        while not stop.is_set():
            seller = rng.choice(world.sellers)
            async with connection.transaction():
                if rng.random() < 0.5:
                    claims = await connection.fetchval(
                        "SELECT current_setting('request.jwt.claims', true)"
                    )
                    visible = await connection.fetchval("SELECT count(*) FROM public.integrations")
                    tally.probes["bare"] += 1
                    if claims not in (None, "") or visible != 0:
                        tally.mismatches.append(f"probe: bare transaction saw {claims} {visible}")
                    continue
                await connection.execute(
                    "SELECT set_config('request.jwt.claims', $1, true)",
                    json.dumps({"sub": str(seller.id), "role": "authenticated"}),
                )
                await asyncio.sleep(0)  # let other transactions run in between
                acting = await connection.fetchval("SELECT public.app_user_id()")
                owners = await connection.fetch("SELECT user_id FROM public.integrations")
                tally.probes["acting"] += 1
                if acting != seller.id or sorted(row[0] for row in owners) != [seller.id] * len(
                    world.own(seller)
                ):
                    tally.mismatches.append(
                        f"probe: acting as {seller.email} saw {acting} {owners}"
                    )
    finally:
        await connection.close()


async def _sample(bouncer: PgBouncer, owner: AsyncEngine, database: str, tally: Tally) -> None:
    """Client and server connections on pgbouncer, and astra_app backends on PostgreSQL."""
    pools = await asyncio.to_thread(bouncer.show, "POOLS")
    for pool in pools:
        if pool["database"] == "astra" and pool["user"] == "astra_app":
            clients = int(pool["cl_active"]) + int(pool["cl_waiting"])
            servers = sum(
                int(pool[column])
                for column in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
            )
            tally.max_clients = max(tally.max_clients, clients)
            tally.max_servers = max(tally.max_servers, servers)
    async with owner.connect() as connection:
        backends = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE usename = 'astra_app' AND datname = :database"
                ),
                {"database": database},
            )
        ).scalar_one()
    tally.max_backends = max(tally.max_backends, int(backends))
    tally.samples += 1


async def _sampler(
    bouncer: PgBouncer, owner: AsyncEngine, database: str, tally: Tally, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        await _sample(bouncer, owner, database, tally)
        await asyncio.sleep(0.25)


@asynccontextmanager
async def _clients(urls: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them under a request.
    limits = httpx.Limits(
        max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY, keepalive_expiry=2
    )
    clients = [httpx.AsyncClient(base_url=url, limits=limits, timeout=30) for url in urls]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def test_readiness_and_metrics_read_the_database_through_pgbouncer(
    app_urls: list[str],
) -> None:
    """The probes' and the scrape's reads (a SET LOCAL, a definer function, the queue's
    tables) work over transaction pooling, with no prepared statements."""
    async with httpx.AsyncClient(timeout=10) as client:
        for url in app_urls:
            ready = await client.get(f"{url}/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
            for _ in range(6):  # past psycopg's and asyncpg's prepare thresholds
                scraped = await client.get(
                    f"{url}/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
                )
                assert scraped.status_code == 200
                assert "astra_metrics_database_up 1.0" in scraped.text
                assert 'astra_syncs{state="done"}' in scraped.text


async def test_every_response_through_pgbouncer_holds_only_the_callers_rows(
    scaleout_settings: Settings,
    bouncer: PgBouncer,
    app_urls: list[str],
    app_logs: Path,
    password_hash: str,
) -> None:
    assert scaleout_settings.database_url
    owner_url = make_url(scaleout_settings.database_url)
    owner = create_async_engine(owner_url, pool_size=2)
    tally = Tally()
    rng = random.Random(6)
    started = time.monotonic()
    async with _clients(app_urls) as clients:
        world = await _seed(owner, clients, password_hash)
        plan = _plan(world, rng)
        queue = iter(plan)
        stop = asyncio.Event()

        async def worker() -> None:
            for caller, kind, target in queue:
                client = clients[rng.randrange(len(clients))]
                try:
                    response = await _send(client, caller, kind, target, rng)
                except httpx.TransportError as exc:
                    tally.mismatches.append(f"{caller.email} {kind}: {exc!r}")
                    continue
                tally.requests[f"{kind} {response.status_code}"] += 1
                tally.requests[f"process {clients.index(client)}"] += 1
                problem = _check(world, caller, kind, target, response)
                if problem:
                    tally.mismatches.append(problem)

        probe_url = (
            f"postgresql://astra_app:{scaleout_settings.resolved_app_db_password}"
            f"@127.0.0.1:{bouncer.port}/astra"
        )
        side = [
            asyncio.create_task(_probe(probe_url, world, tally, stop, seed))
            for seed in range(PROBES)
        ]
        side.append(
            asyncio.create_task(_sampler(bouncer, owner, str(owner_url.database), tally, stop))
        )
        load_started = time.monotonic()
        try:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        finally:
            stop.set()
            await asyncio.gather(*side)
        load_seconds = time.monotonic() - load_started

    # Nothing was taken over: every row still has its owner and no foreign write landed.
    async with owner.connect() as connection:
        rows = (await connection.execute(text("SELECT id, user_id, name FROM integrations"))).all()
    await owner.dispose()
    for row in rows:
        owner_of = world.owner_of[str(row.id)]
        if row.user_id != owner_of.id or row.name == "taken":
            tally.mismatches.append(f"stored: {row.id} now {row.user_id} {row.name!r}")

    stats = next(s for s in bouncer.show("STATS") if s["database"] == "astra")
    summary: dict[str, Any] = {
        "app_processes": APP_PROCESSES,
        "requests": sum(v for k, v in tally.requests.items() if not k.startswith("process")),
        "per_process": sorted(v for k, v in tally.requests.items() if k.startswith("process")),
        "by_kind": {k: v for k, v in sorted(tally.requests.items()) if not k.startswith("process")},
        "probes": dict(tally.probes),
        "pgbouncer_transactions": int(stats["total_xact_count"]),
        "max_client_connections": tally.max_clients,
        "max_server_connections": tally.max_servers,
        "max_astra_app_backends": tally.max_backends,
        "pool_size": POOL_SIZE,
        "samples": tally.samples,
        "load_seconds": round(load_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "mismatches": len(tally.mismatches),
    }
    print("\nscale-out through pgbouncer:", json.dumps(summary))

    assert tally.mismatches == [], (tally.mismatches[:20], _tails(app_logs), bouncer.log()[-3000:])
    assert summary["requests"] == REQUESTS
    assert all(count > REQUESTS / 4 for count in summary["per_process"])
    assert tally.probes["bare"] > 0 and tally.probes["acting"] > 0
    # Really multiplexed: many clients, never more than the pool on the server side.
    assert tally.samples > 0
    assert 0 < tally.max_servers <= POOL_SIZE
    assert 0 < tally.max_backends <= POOL_SIZE
    assert tally.max_clients > 2 * POOL_SIZE
    assert summary["pgbouncer_transactions"] >= REQUESTS
    assert "prepared statement" not in bouncer.log()
