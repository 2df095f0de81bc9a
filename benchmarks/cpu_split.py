"""Where a request's CPU goes: the project against the raw stack, in one process, no wrk.

    .venv/bin/python -m benchmarks.cpu_split   (after `make bench` has seeded .astra-bench)

wrk's figures mix three programs on two cores (the app, PostgreSQL, wrk). This splits out
the app's own share: each ASGI app is called in-process, 8 requests at a time, and the
process's CPU time (time.process_time: this process only, not PostgreSQL's) is divided by
the number of requests. Then the SQL alone: the seller list's two statements in their
transaction, through the project's executor (astra.db.session) and through
asyncpg (what the raw stack runs), without HTTP. Rounds alternate project and raw; the
figure is the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from astra.app import create_app
from astra.db.session import Database
from astra.db.urls import app_url
from astra.settings import Settings
from benchmarks import raw_app
from testkit import seed

ROOT = Path(__file__).resolve().parent
CONCURRENCY = 8
Call = Callable[[int], Awaitable[int]]


def _scope(
    method: str, path: str, query: str = "", headers: tuple[tuple[bytes, bytes], ...] = ()
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8100"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8100),
        "state": {},
    }


async def _call(app: Any, scope: dict[str, Any], body: bytes = b"") -> int:
    """One request through the ASGI app; returns the status."""
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _start(app: Any) -> Callable[[], Awaitable[None]]:
    """Run the app's lifespan startup; returns its shutdown."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "state": {}}, inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


def _requests(app: Any, deliveries: list[list[str]]) -> dict[str, Call]:
    seller = (b"cookie", f"astra_session={seed.session_token(seed.SELLER_20)}".encode())
    poster = (b"cookie", f"astra_session={seed.session_token(seed.POSTING_SELLER)}".encode())
    run = time.time_ns()

    async def floor(i: int) -> int:
        return await _call(app, _scope("GET", "/api/integrations"))

    async def seller_list(i: int) -> int:
        return await _call(app, _scope("GET", "/api/integrations", headers=(seller,)))

    async def create(i: int) -> int:
        body = (
            f'{{"name":"Split {i}","type":"woocommerce","domain":"split{run}-{i}.bench.example"}}'
        ).encode()
        headers = (poster, (b"content-type", b"application/json"))
        return await _call(app, _scope("POST", "/api/integrations", headers=headers), body)

    async def webhook(i: int) -> int:
        integration_id, domain, signature, body = deliveries[i % len(deliveries)]
        headers = (
            (b"content-type", b"application/json"),
            (b"x-shopify-topic", b"orders/updated"),
            (b"x-shopify-hmac-sha256", signature.encode()),
            (b"x-shopify-shop-domain", domain.encode()),
            (b"x-shopify-webhook-id", f"split-{run}-{i}".encode()),
        )
        scope = _scope("POST", "/api/webhooks/order", f"id={integration_id}", headers)
        return await _call(app, scope, body.encode())

    return {
        "floor: anonymous GET /api/integrations -> 401": floor,
        "seller GET /api/integrations (20 stores)": seller_list,
        "POST /api/integrations": create,
        "signed Shopify delivery": webhook,
    }


async def _cpu_per_call(call: Call, requests: int, first: int) -> float:
    """Microseconds of this process's CPU per call, CONCURRENCY calls at a time."""
    per_worker = requests // CONCURRENCY

    async def worker(k: int) -> None:
        for j in range(per_worker):
            status = await call(first + k * per_worker + j)
            if status >= 400 and status != 401:
                raise RuntimeError(f"unexpected status {status}")

    started = time.process_time()
    await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
    return (time.process_time() - started) / (per_worker * CONCURRENCY) * 1e6


async def _sql_only(settings: Settings, requests: int, rounds: int) -> tuple[float, float]:
    """The seller list without HTTP: the project's own calls (authenticate, then
    list_integrations, in a request transaction on the executor) against the raw stack's
    (the same two statements on asyncpg); microseconds of CPU each."""
    from astra.auth.service import authenticate, hash_token
    from astra.db.session import Transaction
    from astra.integrations.service import list_integrations

    token = seed.session_token(seed.SELLER_20)
    database = Database(app_url(settings), pool_size=CONCURRENCY, max_overflow=0)
    raw_url = raw_app.database_url(settings)
    pool = await asyncpg.create_pool(raw_url, min_size=CONCURRENCY, max_size=CONCURRENCY)
    listing = raw_app.LIST_PAGE[False, False]

    async def with_sqlalchemy(i: int) -> int:
        db = Transaction(database)
        user = await authenticate(db, token)
        assert user is not None
        page = await list_integrations(db, user, limit=50, cursor=None)
        await db.end(commit=True)
        return 200 if page.rows else 500

    async def with_asyncpg(i: int) -> int:
        async with pool.acquire() as connection, connection.transaction():
            user = await connection.fetchrow(raw_app.AUTHENTICATE.sql, hash_token(token))
            values = {"viewer_id": user["id"], "limit": 51}
            rows = await connection.fetch(listing.sql, *listing.args(values))
        return 200 if rows else 500

    try:
        await _cpu_per_call(with_sqlalchemy, 200, 0)  # warm up: pools, prepared statements
        await _cpu_per_call(with_asyncpg, 200, 0)
        sqlalchemy_us, asyncpg_us = [], []
        for _ in range(rounds):
            sqlalchemy_us.append(await _cpu_per_call(with_sqlalchemy, requests, 0))
            asyncpg_us.append(await _cpu_per_call(with_asyncpg, requests, 0))
        return statistics.median(sqlalchemy_us), statistics.median(asyncpg_us)
    finally:
        await pool.close()
        await database.dispose()


def read_deliveries(path: Path) -> list[list[str]]:
    """The signed deliveries webhook_payloads.write prepared, one per line."""
    return [line.split("\t", 3) for line in path.read_text().splitlines()]


async def measure(
    settings: Settings, deliveries: list[list[str]], requests: int, rounds: int
) -> None:
    project, raw = create_app(settings), raw_app.app
    stops = [await _start(project), await _start(raw)]
    try:
        calls = {"project": _requests(project, deliveries), "raw": _requests(raw, deliveries)}
        print(
            f"\nCPU per request in-process ({CONCURRENCY} at a time, median of {rounds} rounds)\n"
        )
        print("| request | project us | raw stack us | project / raw |")
        print("|---|---|---|---|")
        offset = 0
        for name in calls["project"]:
            figures: dict[str, list[float]] = {"project": [], "raw": []}
            for target in ("project", "raw"):  # warm up
                await _cpu_per_call(calls[target][name], 200, offset)
                offset += 1000
            for _ in range(rounds):
                for target in ("project", "raw"):
                    figures[target].append(
                        await _cpu_per_call(calls[target][name], requests, offset)
                    )
                    offset += requests
            ours, theirs = (statistics.median(figures[t]) for t in ("project", "raw"))
            print(f"| {name} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.1f} |", flush=True)
    finally:
        for stop in stops:
            await stop()
    sqlalchemy_us, asyncpg_us = await _sql_only(settings, requests, rounds)
    print(
        f"| the seller list's two statements, no HTTP: the executor vs asyncpg | {sqlalchemy_us:.0f} "
        f"| {asyncpg_us:.0f} | {sqlalchemy_us / asyncpg_us:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("ASTRA_DATA_DIR", str(ROOT.parent / ".astra-bench"))
    deliveries = read_deliveries(ROOT / "results" / "webhooks.tsv")
    asyncio.run(measure(Settings(), deliveries, args.requests, args.rounds))


if __name__ == "__main__":
    main()
