"""Shopify deliveries, signed exactly as Shopify signs them."""

from __future__ import annotations

from decimal import Decimal

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.stores import (
    T0,
    Store,
    deliver,
    deliveries_of,
    encode,
    hmac_b64,
    orders_of,
    shopify_headers,
    shopify_order,
)


async def test_valid_delivery_stores_the_order_and_the_delivery(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order(5523094421734))
    headers = shopify_headers(
        shopify_store, body, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    )

    response = await deliver(anonymous, shopify_store, body, headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "stored"}
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["platform"] == "shopify"
    assert order["platform_order_id"] == "5523094421734"
    assert order["order_number"] == "#1001"
    assert order["total"] == Decimal("199.00")
    assert order["currency"] == "USD"
    assert order["financial_status"] == "paid"
    assert order["source_updated_at"] == T0
    assert order["placed_at"] is not None
    assert order["deleted_at"] is None
    assert order["raw"]["line_items"][0]["sku"] == "LS-M"
    [delivery] = await deliveries_of(owner_engine, shopify_store)
    assert delivery["delivery_id"] == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert delivery["topic"] == "orders/create"
    assert delivery["outcome"] == "stored"
    assert delivery["body_bytes"] == len(body)
    assert delivery["platform_order_id"] == "5523094421734"
    assert delivery["user_id"] == order["user_id"]


async def test_tampered_body_is_401_and_stores_nothing(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order(total="199.00"))
    headers = shopify_headers(shopify_store, body)
    tampered = body.replace(b'"total_price":"199.00"', b'"total_price":"1.00"')
    assert tampered != body

    response = await deliver(anonymous, shopify_store, tampered, headers)

    assert response.status_code == 401
    assert await orders_of(owner_engine, shopify_store) == []
    assert await deliveries_of(owner_engine, shopify_store) == []


async def test_wrong_secret_is_401(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body, secret="not-the-secret-of-this-store")

    response = await deliver(anonymous, shopify_store, body, headers)

    assert response.status_code == 401
    assert response.json() == {
        "detail": "The signature does not match this integration's webhook secret."
    }
    assert await deliveries_of(owner_engine, shopify_store) == []


async def test_another_stores_secret_is_401(
    anonymous: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    shopify_store: Store,
    other_store: Store,
) -> None:
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body, secret=other_store.secret)

    response = await deliver(anonymous, shopify_store, body, headers)

    assert response.status_code == 401
    assert await orders_of(owner_engine, shopify_store) == []
    assert await orders_of(owner_engine, other_store) == []


async def test_missing_signature_header_is_401(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body)
    del headers["X-Shopify-Hmac-Sha256"]

    response = await deliver(anonymous, shopify_store, body, headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "The delivery is not signed."}
    assert await deliveries_of(owner_engine, shopify_store) == []


async def test_missing_shop_domain_header_is_401(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body)
    del headers["X-Shopify-Shop-Domain"]

    response = await deliver(anonymous, shopify_store, body, headers)

    assert response.status_code == 401
    assert await deliveries_of(owner_engine, shopify_store) == []


async def test_wrong_shop_domain_is_401_even_when_signed(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body)
    headers["X-Shopify-Shop-Domain"] = "other-shop.myshopify.com"

    response = await deliver(anonymous, shopify_store, body, headers)

    assert response.status_code == 401
    assert response.json() == {
        "detail": "The delivery names another store than this integration's."
    }
    assert await orders_of(owner_engine, shopify_store) == []


async def test_header_names_are_case_insensitive(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order(1))
    lower = {name.lower(): value for name, value in shopify_headers(shopify_store, body).items()}
    body_2 = encode(shopify_order(2))
    upper = {name.upper(): value for name, value in shopify_headers(shopify_store, body_2).items()}
    # HTTP/2 sends names lower-case; the shop domain's value may arrive in any case too.
    upper["X-SHOPIFY-SHOP-DOMAIN"] = shopify_store.domain.upper()

    assert (await deliver(anonymous, shopify_store, body, lower)).status_code == 200
    assert (await deliver(anonymous, shopify_store, body_2, upper)).status_code == 200
    assert len(await orders_of(owner_engine, shopify_store)) == 2


async def test_the_same_delivery_twice_is_200_and_stored_once(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body)

    first = await deliver(anonymous, shopify_store, body, headers)
    again = await deliver(anonymous, shopify_store, body, headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == {"outcome": "duplicate"}
    assert len(await deliveries_of(owner_engine, shopify_store)) == 1
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["updated_at"] == order["received_at"], "the duplicate rewrote the order"


async def test_an_older_version_never_overwrites_a_newer_one(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    created = encode(shopify_order(updated_at=T0, financial_status="pending"))
    paid = encode(shopify_order(updated_at=T0.replace(minute=20), financial_status="paid"))
    refunded = encode(shopify_order(updated_at=T0.replace(minute=40), financial_status="refunded"))

    # Retries and parallel sends reorder deliveries: refunded arrives before paid.
    for body, topic in ((created, "orders/create"), (refunded, "orders/updated")):
        response = await deliver(
            anonymous, shopify_store, body, shopify_headers(shopify_store, body, topic=topic)
        )
        assert response.json() == {"outcome": "stored"}
    late = await deliver(
        anonymous, shopify_store, paid, shopify_headers(shopify_store, paid, topic="orders/paid")
    )

    assert late.status_code == 200
    assert late.json() == {"outcome": "stale"}
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["financial_status"] == "refunded"
    assert order["source_updated_at"] == T0.replace(minute=40)
    outcomes = [d["outcome"] for d in await deliveries_of(owner_engine, shopify_store)]
    assert sorted(outcomes) == ["stale", "stored", "stored"]


async def test_orders_paid_and_updated_for_one_change_both_apply(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    """Shopify sends several topics for one change, with the same updated_at."""
    body = encode(shopify_order(financial_status="paid"))
    for topic in ("orders/paid", "orders/updated"):
        response = await deliver(
            anonymous, shopify_store, body, shopify_headers(shopify_store, body, topic=topic)
        )
        assert response.json() == {"outcome": "stored"}
    assert len(await orders_of(owner_engine, shopify_store)) == 1


async def test_delete_marks_the_order_deleted_and_a_late_update_does_not_revive_it(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order(42, updated_at=T0))
    await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))
    delete = encode({"id": 42})
    response = await deliver(
        anonymous,
        shopify_store,
        delete,
        shopify_headers(shopify_store, delete, topic="orders/delete"),
    )
    assert response.json() == {"outcome": "deleted"}
    late = encode(shopify_order(42, updated_at=T0.replace(minute=59), financial_status="voided"))
    await deliver(
        anonymous, shopify_store, late, shopify_headers(shopify_store, late, topic="orders/updated")
    )

    [order] = await orders_of(owner_engine, shopify_store)
    assert order["deleted_at"] is not None
    assert order["raw"]["line_items"], "the last full version is kept"


async def test_delete_before_create_leaves_a_deleted_order(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    delete = encode({"id": 43})
    await deliver(
        anonymous,
        shopify_store,
        delete,
        shopify_headers(shopify_store, delete, topic="orders/delete"),
    )
    body = encode(shopify_order(43))
    await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))

    [order] = await orders_of(owner_engine, shopify_store)
    assert order["deleted_at"] is not None
    assert order["order_number"] == "#1001"


async def test_orders_edited_summary_is_recorded_but_not_an_order(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(
        {
            "order_edit": {
                "id": 78912328,
                "app_id": None,
                "created_at": "2024-05-02T10:25:00-04:00",
                "committed_at": "2024-05-02T10:25:00-04:00",
                "notify_customer": False,
                "order_id": 5523094421734,
                "staff_note": "",
                "user_id": None,
                "line_items": {"additions": [], "removals": []},
            }
        }
    )
    response = await deliver(
        anonymous, shopify_store, body, shopify_headers(shopify_store, body, topic="orders/edited")
    )

    assert response.json() == {"outcome": "ignored"}
    assert await orders_of(owner_engine, shopify_store) == []
    [delivery] = await deliveries_of(owner_engine, shopify_store)
    assert delivery["topic"] == "orders/edited"


async def test_other_topics_are_acknowledged_and_logged_as_ignored(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode({"id": 706405506930370084, "email": "bob@example.com"})
    response = await deliver(
        anonymous,
        shopify_store,
        body,
        shopify_headers(shopify_store, body, topic="customers/create"),
    )

    assert response.status_code == 200
    assert response.json() == {"outcome": "ignored"}
    assert await orders_of(owner_engine, shopify_store) == []
    [delivery] = await deliveries_of(owner_engine, shopify_store)
    assert delivery["outcome"] == "ignored"


async def test_signed_but_not_json_is_400(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = b"<order><id>1</id></order>"
    response = await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))

    assert response.status_code == 400
    assert response.json() == {"detail": "The body is not JSON."}
    assert await deliveries_of(owner_engine, shopify_store) == []


async def test_signed_json_without_an_order_id_is_400(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    for body in (encode({"name": "#1001"}), b"[1, 2]", encode({"id": 1.5}), encode({"id": True})):
        response = await deliver(
            anonymous, shopify_store, body, shopify_headers(shopify_store, body)
        )
        assert response.status_code == 400, body
    assert await deliveries_of(owner_engine, shopify_store) == []


async def test_missing_topic_is_400(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body)
    del headers["X-Shopify-Topic"]

    response = await deliver(anonymous, shopify_store, body, headers)

    assert response.status_code == 400
    assert response.json() == {"detail": "The topic header is missing."}


async def test_payload_with_nul_characters_is_stored_without_them(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    """PostgreSQL cannot store NUL in text or JSONB; a buyer's note must not block the order."""
    payload = shopify_order()
    payload["note"] = "leave at door\u0000"
    body = encode(payload)
    assert b"\\u0000" in body

    response = await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))

    assert response.status_code == 200, response.text
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["raw"]["note"] == "leave at door"


async def test_large_numbers_in_the_payload_keep_every_digit(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order()).replace(
        b'"total_weight":500', b'"total_weight":123456789012345678901234567890'
    )

    response = await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))

    assert response.status_code == 200
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["raw"]["total_weight"] == 123456789012345678901234567890


async def test_signature_is_checked_on_the_exact_bytes(
    anonymous: httpx.AsyncClient, shopify_store: Store
) -> None:
    """Re-serialised JSON is different bytes: the same order, but not what was signed."""
    body = encode(shopify_order())
    pretty = body.replace(b",", b", ")
    headers = shopify_headers(shopify_store, body)
    headers["X-Shopify-Hmac-Sha256"] = hmac_b64(shopify_store.secret, body)

    assert (await deliver(anonymous, shopify_store, pretty, headers)).status_code == 401
