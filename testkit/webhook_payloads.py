"""Signed Shopify deliveries for the webhook benchmark (`make bench`), written one per line
for wrk's webhook.lua, signed as testkit.stores signs them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from astra.crypto import decrypt
from astra.db.urls import owner_url
from astra.settings import Settings
from testkit.stores import encode, hmac_b64


def bench_order(order_id: int, shop: str) -> dict[str, object]:
    """A trimmed but realistic orders/updated payload (about 1.5 KB), the benchmark's own:
    its size is part of what the published figures measured."""
    moment = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=order_id % 10_000)
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{order_id % 100_000}",
        "order_number": order_id % 100_000,
        "email": "buyer@example.com",
        "created_at": moment.isoformat(),
        "updated_at": (moment + timedelta(minutes=5)).isoformat(),
        "currency": "EUR",
        "total_price": "129.90",
        "subtotal_price": "119.90",
        "total_tax": "10.00",
        "financial_status": "paid",
        "fulfillment_status": None,
        "source_name": "web",
        "shop": shop,
        "line_items": [
            {
                "id": order_id * 10 + n,
                "title": f"Product {n}",
                "quantity": n,
                "price": "39.95",
                "sku": f"SKU-{n:04d}",
                "vendor": "Bench",
                "taxable": True,
            }
            for n in range(1, 4)
        ],
        "shipping_address": {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "address1": "1 Example St",
            "city": "Berlin",
            "zip": "10115",
            "country_code": "DE",
        },
    }


async def _targets(settings: Settings, count: int) -> list[tuple[str, str, str]]:
    engine = create_async_engine(owner_url(settings))
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT id::text, domain, webhook_secret FROM public.integrations "
                    "WHERE type = 'shopify' ORDER BY id LIMIT :count"
                ),
                {"count": count},
            )
        ).all()
    await engine.dispose()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def write(settings: Settings, path: Path, *, stores: int = 200, per_store: int = 10) -> int:
    lines = []
    targets = asyncio.run(_targets(settings, stores))
    for n, (integration_id, domain, sealed) in enumerate(targets):
        secret = decrypt(settings.encryption_key, sealed)  # stored encrypted, as the app does
        for k in range(per_store):
            body = encode(bench_order(9_000_000 + n * per_store + k, domain))
            lines.append(f"{integration_id}\t{domain}\t{hmac_b64(secret, body)}\t{body.decode()}")
    path.write_text("\n".join(lines) + "\n")
    return len(lines)
