"""Stores that send webhooks the way Shopify and WooCommerce do, and owner-side reads of
what the service stored from them.

The signatures are computed here, independently of astra's own code: base64 of
HMAC-SHA256 over the exact body bytes, keyed by the integration's secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

T0 = datetime(2024, 5, 2, 14, 15, 31, tzinfo=UTC)


@dataclass
class Store:
    id: uuid.UUID
    type: str
    domain: str
    secret: str

    @property
    def url(self) -> str:
        return f"/api/webhooks/order?id={self.id}"


class SignedIn(Protocol):
    """Any signed-in caller: the tests' accounts and the load harness's alike."""

    @property
    def client(self) -> httpx.AsyncClient: ...


async def connect_store(
    account: SignedIn, platform: str, domain: str, credentials: dict[str, str] | None = None
) -> Store:
    """Connect the store through the API (with its API `credentials`, if given)."""
    body: dict[str, Any] = {"name": f"{domain} store", "type": platform, "domain": domain}
    if credentials is not None:
        body["credentials"] = credentials
    response = await account.client.post("/api/integrations", json=body)
    assert response.status_code == 201, response.text
    body = response.json()
    return Store(uuid.UUID(body["id"]), platform, body["domain"], body["webhook_secret"])


def hmac_b64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def shopify_order(
    order_id: int = 5523094421734,
    *,
    updated_at: datetime = T0,
    financial_status: str = "paid",
    total: str = "199.00",
    number: int = 1001,
) -> dict[str, Any]:
    """An order as Shopify's orders/* webhooks send it (trimmed to the common fields)."""
    created = T0.astimezone(UTC) - timedelta(minutes=3)
    eastern = timedelta(hours=-4)
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "app_id": 580111,
        "browser_ip": "203.0.113.7",
        "buyer_accepts_marketing": False,
        "cancel_reason": None,
        "cancelled_at": None,
        "checkout_id": 36598426763494,
        "confirmation_number": "X7KQ2PZ1M",
        "confirmed": True,
        "contact_email": "ada@example.com",
        "created_at": (created + eastern).replace(tzinfo=None).isoformat() + "-04:00",
        "currency": "USD",
        "current_total_price": total,
        "email": "ada@example.com",
        "financial_status": financial_status,
        "fulfillment_status": None,
        "name": f"#{number}",
        "number": number - 1000,
        "order_number": number,
        "presentment_currency": "USD",
        "processed_at": (created + eastern).replace(tzinfo=None).isoformat() + "-04:00",
        "source_name": "web",
        "subtotal_price": "179.00",
        "tags": "",
        "test": False,
        "total_discounts": "0.00",
        "total_line_items_price": "179.00",
        "total_price": total,
        "total_tax": "0.00",
        "total_weight": 500,
        "updated_at": (updated_at + eastern).replace(tzinfo=None).isoformat() + "-04:00",
        "customer": {
            "id": 7207353532646,
            "email": "ada@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
        },
        "billing_address": {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "address1": "12 St James's Square",
            "city": "London",
            "zip": "SW1Y 4JH",
            "country_code": "GB",
        },
        "line_items": [
            {
                "id": 13962387947750,
                "name": "Linen shirt - M",
                "price": "89.50",
                "quantity": 2,
                "sku": "LS-M",
                "product_id": 8301112557798,
                "variant_id": 44895140725990,
            }
        ],
        "shipping_lines": [{"code": "Standard", "price": "20.00", "title": "Standard"}],
    }


def woo_order(
    order_id: int = 727,
    *,
    modified: datetime = T0,
    status: str = "processing",
    total: str = "29.35",
) -> dict[str, Any]:
    """An order as WooCommerce's order.* webhooks send it (REST API v3 shape, trimmed)."""
    created = T0 - timedelta(minutes=3)
    local = timedelta(hours=2)
    return {
        "id": order_id,
        "parent_id": 0,
        "status": status,
        "currency": "EUR",
        "version": "8.9.1",
        "prices_include_tax": True,
        "date_created": (created + local).replace(tzinfo=None).isoformat(),
        "date_modified": (modified + local).replace(tzinfo=None).isoformat(),
        "discount_total": "0.00",
        "shipping_total": "4.90",
        "total": total,
        "total_tax": "4.69",
        "customer_id": 12,
        "order_key": "wc_order_Qp3YkQ1m0d9xA",
        "billing": {
            "first_name": "Grace",
            "last_name": "Hopper",
            "address_1": "Keizersgracht 12",
            "city": "Amsterdam",
            "postcode": "1015 CN",
            "country": "NL",
            "email": "grace@example.com",
        },
        "payment_method": "bacs",
        "payment_method_title": "Direct bank transfer",
        "date_paid": None,
        "date_created_gmt": created.replace(tzinfo=None).isoformat(),
        "date_modified_gmt": modified.replace(tzinfo=None).isoformat(),
        "number": str(order_id),
        "line_items": [
            {
                "id": 315,
                "name": "Espresso cup",
                "product_id": 93,
                "quantity": 3,
                "subtotal": "24.45",
                "total": "24.45",
                "sku": "CUP-ESP",
                "price": 8.15,
            }
        ],
        "meta_data": [],
    }


def shopify_headers(
    store: Store,
    body: bytes,
    *,
    topic: str = "orders/create",
    webhook_id: str | None = None,
    secret: str | None = None,
    triggered_at: datetime | None = None,
) -> dict[str, str]:
    # Shopify stamps each delivery with when its event happened, in nanoseconds.
    moment = (triggered_at or datetime.now(UTC)).astimezone(UTC)
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": hmac_b64(secret or store.secret, body),
        "X-Shopify-Shop-Domain": store.domain,
        "X-Shopify-API-Version": "2024-04",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}123Z",
    }


def woo_headers(
    store: Store,
    body: bytes,
    *,
    topic: str = "order.created",
    delivery_id: str | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    resource, _, event = topic.partition(".")
    return {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/8.9.1 Hookshot (WordPress/6.5.2)",
        "X-WC-Webhook-Source": f"https://{store.domain}/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": hmac_b64(secret or store.secret, body),
        "X-WC-Webhook-ID": "14",
        "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex,
    }


def signed_headers(store: Store, body: bytes, **kwargs: Any) -> dict[str, str]:
    if store.type == "shopify":
        return shopify_headers(store, body, **kwargs)
    return woo_headers(store, body, **kwargs)


def order_payload(store: Store, order_id: int, **kwargs: Any) -> dict[str, Any]:
    if store.type == "shopify":
        return shopify_order(order_id, **kwargs)
    return woo_order(order_id, **kwargs)


async def deliver(
    client: httpx.AsyncClient, store: Store, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(store.url, content=body, headers=headers)


async def send_order(
    client: httpx.AsyncClient, store: Store, order_id: int, **kwargs: Any
) -> httpx.Response:
    """A signed order-created delivery of a new order."""
    body = encode(order_payload(store, order_id, **kwargs))
    return await deliver(client, store, body, signed_headers(store, body))


async def fetch(owner_engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Read rows as the database owner (sees everything, RLS aside)."""
    async with owner_engine.connect() as connection:
        result = await connection.execute(text(sql), params)
        return [dict(row._mapping) for row in result]


async def orders_of(owner_engine: AsyncEngine, store: Store) -> list[dict[str, Any]]:
    return await fetch(
        owner_engine,
        "SELECT * FROM orders WHERE integration_id = :id ORDER BY received_at, platform_order_id",
        id=store.id,
    )


async def deliveries_of(owner_engine: AsyncEngine, store: Store) -> list[dict[str, Any]]:
    return await fetch(
        owner_engine,
        "SELECT * FROM webhook_deliveries WHERE integration_id = :id ORDER BY received_at",
        id=store.id,
    )
