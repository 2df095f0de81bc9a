"""The /settings/integrations budget: server time for the page with 50 cards, and the
weight of its HTML + CSS + JS.

    .venv/bin/python -m benchmarks.page_render [--requests 500]

Runs the real app in-process (ASGI, middleware, session check, RLS transaction, service
query, Jinja render) against a fresh migrated database: DATABASE_URL's server when set,
else an embedded PostgreSQL in a temporary directory. Prints median and p99 per role;
the issue's budget is < 50 ms server time and < 100 KB for HTML + CSS + JS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from astra.app import create_app
from astra.auth.passwords import hash_password
from astra.db import migrate
from astra.db.embedded import embedded_database_url, stop_embedded
from astra.integrations.pages import templates
from astra.integrations.schemas import IntegrationRead
from astra.settings import Settings

PASSWORD = "benchmark password"
ADMIN = "admin@page.example"
SELLER = "seller@page.example"
OTHER = "other@page.example"
CARDS = 50
BUDGET_MS = 50.0
BUDGET_BYTES = 100 * 1024
STORE_NAMES = ["Northwind Outfitters", "Harbor & Vine", "Blue Fern Studio", "Copper Kettle Co"]


async def create_database(server: URL, name: str) -> None:
    engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()


async def drop_database(server: URL, name: str) -> None:
    engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


async def seed_users(owner: URL) -> None:
    engine = create_async_engine(owner)
    password_hash = hash_password(PASSWORD)
    async with engine.begin() as connection:
        for email, role in ((ADMIN, "admin"), (SELLER, "seller"), (OTHER, "seller")):
            await connection.execute(
                text("SELECT public.app_create_user(:email, :hash, :role)"),
                {"email": email, "hash": password_hash, "role": role},
            )
    await engine.dispose()


async def signed_in(app: object, email: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://127.0.0.1:8000",
    )
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    return client


async def add_stores(seller: httpx.AsyncClient, other: httpx.AsyncClient) -> None:
    """50 stores for the seller; the admin sees those plus 10 of another seller's."""
    for number in range(CARDS):
        shopify = number % 2 == 0
        body = {
            "name": f"{STORE_NAMES[number % len(STORE_NAMES)]} {number:02d}",
            "type": "shopify" if shopify else "woocommerce",
            "domain": f"store-{number:02d}.myshopify.com"
            if shopify
            else f"shop.store-{number:02d}.example.com",
        }
        (await seller.post("/api/integrations", json=body)).raise_for_status()
    for number in range(10):
        body = {"name": f"Other {number}", "type": "shopify", "domain": f"o-{number}.myshopify.com"}
        (await other.post("/api/integrations", json=body)).raise_for_status()


async def time_page(client: httpx.AsyncClient, requests: int) -> tuple[list[float], str]:
    html = ""
    for _ in range(20):
        html = (await client.get("/settings/integrations")).text
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.get("/settings/integrations")
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return timings, html


async def page_weight(client: httpx.AsyncClient, html: str) -> dict[str, int]:
    """Bytes of the page and of every stylesheet and script it loads (module imports too)."""
    sizes = {"HTML": len(html.encode())}
    pending = re.findall(r'(?:src|href)="(/static/[^"]+\.(?:css|js))"', html)
    while pending:
        path = pending.pop()
        if path in sizes:
            continue
        response = await client.get(path)
        response.raise_for_status()
        sizes[path] = len(response.content)
        pending += [
            f"/static/js/{name}" for name in re.findall(r'from "\./([\w-]+\.js)"', response.text)
        ]
    return sizes


async def time_template(client: httpx.AsyncClient, requests: int) -> list[float]:
    """The Jinja render alone, with the same 50 integrations the page shows."""
    me = (await client.get("/api/auth/me")).json()
    items = (await client.get("/api/integrations")).json()["items"]
    context = {
        "user": SimpleNamespace(email=me["email"], is_admin=me["role"] == "admin"),
        "integrations": [IntegrationRead.model_validate(item) for item in items],
        "next_cursor": None,
    }
    template = templates.env.get_template("integrations.html")
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        template.render(context)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def summary(timings: list[float]) -> tuple[float, float]:
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def run(settings: Settings, requests: int) -> bool:
    app = create_app(settings)
    ok = True
    async with app.router.lifespan_context(app):
        admin, seller, other = [await signed_in(app, email) for email in (ADMIN, SELLER, OTHER)]
        await add_stores(seller, other)
        print(f"GET /settings/integrations, in-process, {requests} requests after 20 warm-up")
        print(f"{'viewer':<22}{'cards':>6}{'median ms':>12}{'p99 ms':>10}")
        pages = {}
        for label, client in (("seller (50 cards)", seller), ("admin (50 of 60)", admin)):
            timings, html = await time_page(client, requests)
            median, p99 = summary(timings)
            cards = len(re.findall(r'<article class="card" data-id="[0-9a-f-]{36}"', html))
            print(f"{label:<22}{cards:>6}{median:>12.2f}{p99:>10.2f}")
            ok &= p99 < BUDGET_MS
            pages[label] = html
        median, p99 = summary(await time_template(seller, requests))
        print(f"{'Jinja render only':<22}{CARDS:>6}{median:>12.2f}{p99:>10.2f}")
        print()
        for label, html in pages.items():
            sizes = await page_weight(admin, html)
            total = sum(sizes.values())
            parts = ", ".join(f"{name.rsplit('/', 1)[-1]} {size:,}" for name, size in sizes.items())
            print(f"weight, {label}: {total:,} bytes ({total / 1024:.1f} KiB) = {parts}")
            ok &= total < BUDGET_BYTES
        for client in (admin, seller, other):
            await client.aclose()
    print()
    print(
        f"budget: p99 < {BUDGET_MS:.0f} ms and < {BUDGET_BYTES // 1024} KiB -> {'met' if ok else 'NOT met'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="astra-page-bench-") as tmp:
        data_dir = Path(tmp)
        embedded = os.environ.get("DATABASE_URL") is None
        raw = embedded_database_url(data_dir) if embedded else os.environ["DATABASE_URL"]
        server = make_url(raw).set(drivername="postgresql+asyncpg")
        name = f"astra_page_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(create_database(server, name))
        try:
            owner = server.set(database=name)
            settings = Settings(
                database_url=owner.render_as_string(hide_password=False),
                data_dir=data_dir,
                access_log=False,
            )
            migrate.upgrade(settings)
            asyncio.run(seed_users(owner))
            ok = asyncio.run(run(settings, args.requests))
        finally:
            asyncio.run(drop_database(server, name))
            if embedded:
                stop_embedded(data_dir)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
