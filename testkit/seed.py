"""Seed a benchmark database with set-based SQL: 10,000 sellers, 100,000 integrations,
1,000,000 orders, plus one seller with 20 stores and an admin. Sessions get known
tokens (`bench-<email>`) so load generators can sign in without the API.

`make bench` (benchmarks/run.py) seeds all of it; tests/db/test_query_plans.py seeds the
same stores, with fewer orders and one delivery each, and plans the hot reads on them."""

from __future__ import annotations

import asyncio
import hashlib
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from astra.auth.passwords import hash_password
from astra.crypto import encrypt
from astra.db import migrate
from astra.db.urls import owner_url
from astra.settings import Settings

SELLERS = 10_000
STORES_PER_SELLER = 10
ORDERS_PER_STORE = 10
# The seeded accounts' password: a benchmark database holds nothing worth guarding.
PASSWORD = "benchmark password"  # noqa: S105
SELLER_20 = "twenty@bench.example"
ADMIN = "admin@bench.example"
# Creates stores during the POST benchmark, so the 20-store seller keeps exactly 20.
POSTING_SELLER = "seller1@bench.example"


def session_token(email: str) -> str:
    return f"bench-{email}"


STATEMENTS = [
    "TRUNCATE public.users CASCADE",
    # Sellers: seller<n>@bench.example, created one minute apart.
    """
    INSERT INTO public.users (email, password_hash, role, created_at)
    SELECT 'seller' || n || '@bench.example', :hash, 'seller', now() - n * interval '1 minute'
    FROM generate_series(1, :sellers) AS n
    """,
    "INSERT INTO public.users (email, password_hash, role) VALUES (:seller20, :hash, 'seller')",
    "INSERT INTO public.users (email, password_hash, role) VALUES (:admin, :hash, 'admin')",
    # Ten stores per seller, one second apart, alternating platforms.
    """
    INSERT INTO public.integrations
      (user_id, name, type, domain, webhook_secret, created_at, updated_at)
    SELECT u.id,
           'Store ' || u.n || '-' || s,
           CASE WHEN s % 2 = 0 THEN 'shopify' ELSE 'woocommerce' END,
           CASE WHEN s % 2 = 0 THEN 'store-' || u.n || '-' || s || '.myshopify.com'
                ELSE 'store-' || u.n || '-' || s || '.example.com' END,
           md5(u.n || '-' || s) || md5(s || '-' || u.n),
           now() - (u.n * :per_seller + s) * interval '1 second',
           now() - (u.n * :per_seller + s) * interval '1 second'
    FROM (SELECT id, row_number() OVER (ORDER BY email) AS n FROM public.users
          WHERE email LIKE 'seller%@bench.example') AS u,
         generate_series(1, :per_seller) AS s
    """,
    """
    INSERT INTO public.integrations (user_id, name, type, domain, webhook_secret)
    SELECT id, 'Twenty ' || s, 'shopify', 'twenty-' || s || '.myshopify.com',
           md5('twenty' || s) || md5(s::text)
    FROM public.users, generate_series(1, 20) AS s WHERE email = :seller20
    """,
]


SECRETS_SQL = "SELECT id, webhook_secret AS s FROM public.integrations"
ENCRYPT_SQL = """
UPDATE public.integrations AS i SET webhook_secret = v.s
FROM unnest(CAST(:ids AS uuid[]), CAST(:secrets AS text[])) AS v(id, s) WHERE i.id = v.id
"""

ORDERS_SQL = """
INSERT INTO public.orders (integration_id, user_id, platform, platform_order_id, order_number,
                           total, currency, financial_status, placed_at, source_updated_at,
                           raw, received_at, updated_at)
SELECT i.id, i.user_id, i.type, (1000 + o)::text, '#' || (1000 + o), (o * 7.5)::numeric, 'EUR',
       'paid', i.created_at + o * interval '1 hour', i.created_at + o * interval '1 hour',
       jsonb_build_object('id', 1000 + o, 'total_price', (o * 7.5)::text, 'currency', 'EUR'),
       i.created_at + o * interval '1 hour', i.created_at + o * interval '1 hour'
FROM public.integrations i, generate_series(1, :per_store) AS o
"""


# One delivery per store.
DELIVERIES_SQL = """
INSERT INTO public.webhook_deliveries
  (integration_id, delivery_id, user_id, topic, platform_order_id, outcome, body_bytes)
SELECT id, 'seeded', user_id, 'orders/create', '1001', 'stored', 100 FROM public.integrations
"""


async def encrypt_secrets(connection: AsyncConnection, key: bytes) -> None:
    """The app stores webhook secrets encrypted: seal the seeded ones as it would."""
    rows = (await connection.execute(text(SECRETS_SQL))).all()
    await connection.execute(
        text(ENCRYPT_SQL),
        {"ids": [row.id for row in rows], "secrets": [encrypt(key, row.s) for row in rows]},
    )


async def seed_stores(connection: AsyncConnection, password_hash: str) -> None:
    """The sellers, the 20-store seller, the admin and every seller's stores."""
    params = {
        "hash": password_hash,
        "sellers": SELLERS,
        "per_seller": STORES_PER_SELLER,
        "seller20": SELLER_20,
        "admin": ADMIN,
    }
    for statement in STATEMENTS:
        await connection.execute(text(statement), params)


async def seed_orders(connection: AsyncConnection, per_store: int = ORDERS_PER_STORE) -> None:
    await connection.execute(text(ORDERS_SQL), {"per_store": per_store})


async def seed_deliveries(connection: AsyncConnection) -> None:
    await connection.execute(text(DELIVERIES_SQL))


async def _seed(settings: Settings) -> dict[str, float]:
    engine = create_async_engine(owner_url(settings))
    timings: dict[str, float] = {}
    password_hash = hash_password(PASSWORD)
    async with engine.begin() as connection:
        started = time.perf_counter()
        await seed_stores(connection, password_hash)
        await encrypt_secrets(connection, settings.encryption_key)
        timings["users+integrations"] = time.perf_counter() - started
        started = time.perf_counter()
        await seed_orders(connection)
        timings["orders"] = time.perf_counter() - started
        for email in (SELLER_20, ADMIN, POSTING_SELLER):
            await connection.execute(
                text(
                    "INSERT INTO public.sessions (token_hash, user_id, expires_at) "
                    "SELECT :hash, id, now() + interval '1 day' FROM public.users "
                    "WHERE email = :email"
                ),
                {"hash": hashlib.sha256(session_token(email).encode()).digest(), "email": email},
            )
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE"))
    await engine.dispose()
    return timings


def seed(settings: Settings) -> dict[str, float]:
    migrate.upgrade(settings)
    return asyncio.run(_seed(settings))


if __name__ == "__main__":
    print(seed(Settings()))
