"""WooCommerce deliveries, signed exactly as WC_Webhook::generate_signature signs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.stores import (
    T0,
    Store,
    connect_store,
    deliver,
    deliveries_of,
    encode,
    orders_of,
    woo_headers,
    woo_order,
)
from tests.conftest import Account


async def test_valid_delivery_stores_the_order(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    body = encode(woo_order(727))
    headers = woo_headers(woo_store, body, delivery_id="9d3c3c1f4ae54a4bc1f5de8b0f1f6a33")

    response = await deliver(anonymous, woo_store, body, headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "stored"}
    [order] = await orders_of(owner_engine, woo_store)
    assert order["platform"] == "woocommerce"
    assert order["platform_order_id"] == "727"
    assert order["order_number"] == "727"
    assert order["total"] == Decimal("29.35")
    assert order["currency"] == "EUR"
    assert order["financial_status"] == "processing"
    # The *_gmt fields carry no offset: they are UTC, not the shop's local time.
    assert order["source_updated_at"] == T0
    assert order["placed_at"] == datetime(2024, 5, 2, 14, 12, 31, tzinfo=UTC)
    [delivery] = await deliveries_of(owner_engine, woo_store)
    assert delivery["topic"] == "order.created"
    assert delivery["delivery_id"].startswith("9d3c3c1f4ae54a4bc1f5de8b0f1f6a33:")


async def test_delivery_id_is_read_under_both_documented_names(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    body = encode(woo_order(727))
    headers = woo_headers(woo_store, body, delivery_id="a" * 32)
    headers["X-WC-Delivery-ID"] = headers.pop("X-WC-Webhook-Delivery-ID")

    assert (await deliver(anonymous, woo_store, body, headers)).json() == {"outcome": "stored"}
    assert (await deliver(anonymous, woo_store, body, headers)).json() == {"outcome": "duplicate"}

    [delivery] = await deliveries_of(owner_engine, woo_store)
    assert delivery["delivery_id"].startswith("a" * 32 + ":")


async def test_the_same_delivery_twice_is_200_and_stored_once(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    body = encode(woo_order())
    headers = woo_headers(woo_store, body)

    assert (await deliver(anonymous, woo_store, body, headers)).status_code == 200
    again = await deliver(anonymous, woo_store, body, headers)

    assert again.status_code == 200
    assert again.json() == {"outcome": "duplicate"}
    assert len(await deliveries_of(owner_engine, woo_store)) == 1


async def test_two_orders_sharing_a_delivery_id_are_both_stored(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    """WooCommerce's delivery id is a hash of the webhook id and the current second."""
    same_second = "5f2b5d3c0d6e4f7a8b9c0d1e2f3a4b5c"
    for order_id in (801, 802):
        body = encode(woo_order(order_id))
        response = await deliver(
            anonymous, woo_store, body, woo_headers(woo_store, body, delivery_id=same_second)
        )
        assert response.json() == {"outcome": "stored"}

    assert [o["platform_order_id"] for o in await orders_of(owner_engine, woo_store)] == [
        "801",
        "802",
    ]


async def test_ping_is_200_and_stores_nothing(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    """Saving a webhook as active makes WooCommerce POST this, unsigned, and expect 200."""
    response = await anonymous.post(
        woo_store.url,
        content=b"webhook_id=14",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "WooCommerce/8.9.1 Hookshot (WordPress/6.5.2)",
        },
    )

    assert response.status_code == 200
    assert response.json() == {"outcome": "ping"}
    assert await deliveries_of(owner_engine, woo_store) == []


async def test_unsigned_delivery_with_woocommerce_headers_is_not_a_ping(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    body = b"webhook_id=14"
    headers = woo_headers(woo_store, body)
    del headers["X-WC-Webhook-Signature"]

    assert (await deliver(anonymous, woo_store, body, headers)).status_code == 401
    assert await deliveries_of(owner_engine, woo_store) == []


async def test_ping_to_a_shopify_integration_is_401(
    anonymous: httpx.AsyncClient, shopify_store: Store
) -> None:
    response = await anonymous.post(shopify_store.url, content=b"webhook_id=14")
    assert response.status_code == 401


async def test_wrong_secret_is_401(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    body = encode(woo_order())
    headers = woo_headers(woo_store, body, secret="x" * 50)

    assert (await deliver(anonymous, woo_store, body, headers)).status_code == 401
    assert await orders_of(owner_engine, woo_store) == []


async def test_source_of_another_site_is_401(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    body = encode(woo_order())
    headers = woo_headers(woo_store, body)
    for source in ("https://evil.example.net/", "not a url at all", ""):
        headers["X-WC-Webhook-Source"] = source
        assert (await deliver(anonymous, woo_store, body, headers)).status_code == 401, source
    del headers["X-WC-Webhook-Source"]
    assert (await deliver(anonymous, woo_store, body, headers)).status_code == 401
    assert await deliveries_of(owner_engine, woo_store) == []


async def test_source_may_be_a_site_url_with_path_port_or_www(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    for order_id, source in enumerate(
        (
            "https://cups.example.com/shop/",
            "http://CUPS.example.com:8080",
            "https://www.cups.example.com/",
        ),
        start=1,
    ):
        body = encode(woo_order(order_id))
        headers = woo_headers(woo_store, body)
        headers["X-WC-Webhook-Source"] = source
        assert (await deliver(anonymous, woo_store, body, headers)).status_code == 200, source
    assert len(await orders_of(owner_engine, woo_store)) == 3


async def test_an_older_version_never_overwrites_a_newer_one(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    newer = encode(woo_order(modified=T0.replace(minute=30), status="completed"))
    older = encode(woo_order(modified=T0, status="processing"))
    await deliver(anonymous, woo_store, newer, woo_headers(woo_store, newer, topic="order.updated"))
    response = await deliver(
        anonymous, woo_store, older, woo_headers(woo_store, older, topic="order.updated")
    )

    assert response.json() == {"outcome": "stale"}
    [order] = await orders_of(owner_engine, woo_store)
    assert order["financial_status"] == "completed"


async def test_deleted_then_restored(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    created = encode(woo_order(727, modified=datetime.now(UTC) - timedelta(hours=1)))
    await deliver(anonymous, woo_store, created, woo_headers(woo_store, created))
    deleted = encode({"id": 727})
    response = await deliver(
        anonymous, woo_store, deleted, woo_headers(woo_store, deleted, topic="order.deleted")
    )
    assert response.json() == {"outcome": "deleted"}
    [order] = await orders_of(owner_engine, woo_store)
    assert order["deleted_at"] is not None

    # Taking an order out of the trash modifies it: the restored version is newer than the delete.
    restored = encode(
        woo_order(727, modified=datetime.now(UTC) + timedelta(seconds=5), status="on-hold")
    )
    response = await deliver(
        anonymous, woo_store, restored, woo_headers(woo_store, restored, topic="order.restored")
    )

    assert response.json() == {"outcome": "stored"}
    [order] = await orders_of(owner_engine, woo_store)
    assert order["deleted_at"] is None
    assert order["financial_status"] == "on-hold"


async def test_an_old_version_replayed_as_a_restore_does_not_undelete(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    """Attack review, finding 1: a captured order.created body, validly signed, sent again
    as order.restored after the order was deleted."""
    created = encode(woo_order(727, modified=datetime.now(UTC) - timedelta(hours=1)))
    await deliver(anonymous, woo_store, created, woo_headers(woo_store, created))
    deleted = encode({"id": 727})
    await deliver(
        anonymous, woo_store, deleted, woo_headers(woo_store, deleted, topic="order.deleted")
    )

    await deliver(
        anonymous, woo_store, created, woo_headers(woo_store, created, topic="order.restored")
    )

    [order] = await orders_of(owner_engine, woo_store)
    assert order["deleted_at"] is not None


async def test_topic_from_resource_and_event_when_the_topic_header_is_absent(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    body = encode(woo_order())
    headers = woo_headers(woo_store, body, topic="order.updated")
    del headers["X-WC-Webhook-Topic"]

    assert (await deliver(anonymous, woo_store, body, headers)).json() == {"outcome": "stored"}
    [delivery] = await deliveries_of(owner_engine, woo_store)
    assert delivery["topic"] == "order.updated"


async def test_product_and_action_topics_are_acknowledged_as_ignored(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store
) -> None:
    """A webhook that fails 5 times is disabled by WooCommerce: never fail a signed one."""
    for topic in ("product.updated", "action.woocommerce_order_status_completed"):
        body = encode({"id": 93, "name": "Espresso cup"})
        response = await deliver(
            anonymous, woo_store, body, woo_headers(woo_store, body, topic=topic)
        )
        assert response.json() == {"outcome": "ignored"}
    assert await orders_of(owner_engine, woo_store) == []


async def test_one_sellers_stores_stay_apart(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, seller: Account, woo_store: Store
) -> None:
    second = await connect_store(seller, "woocommerce", "mugs.example.org")
    body = encode(woo_order(727))
    await deliver(anonymous, woo_store, body, woo_headers(woo_store, body))
    await deliver(anonymous, second, body, woo_headers(second, body))

    assert len(await orders_of(owner_engine, woo_store)) == 1
    assert len(await orders_of(owner_engine, second)) == 1
