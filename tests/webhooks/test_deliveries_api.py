"""GET /api/integrations/{id}/deliveries: the delivery log, newest first."""

from __future__ import annotations

import uuid

import httpx
import pytest

from testkit.stores import Store, deliver, encode, send_order, shopify_headers
from tests.conftest import Account


def deliveries_url(store: Store, limit: int | None = None) -> str:
    query = f"?limit={limit}" if limit else ""
    return f"/api/integrations/{store.id}/deliveries{query}"


async def test_anonymous_is_401(anonymous: httpx.AsyncClient, shopify_store: Store) -> None:
    assert (await anonymous.get(deliveries_url(shopify_store))).status_code == 401


async def test_other_seller_is_403(other_seller: Account, shopify_store: Store) -> None:
    assert (await other_seller.client.get(deliveries_url(shopify_store))).status_code == 403


async def test_unknown_integration_is_404(seller: Account) -> None:
    response = await seller.client.get(f"/api/integrations/{uuid.uuid4()}/deliveries")
    assert response.status_code == 404


@pytest.mark.parametrize("who", ["seller", "admin"])
async def test_owner_and_admin_see_the_newest_deliveries(
    anonymous: httpx.AsyncClient,
    seller: Account,
    admin: Account,
    shopify_store: Store,
    who: str,
) -> None:
    account = {"seller": seller, "admin": admin}[who]
    for order_id in range(1, 4):
        await send_order(anonymous, shopify_store, order_id)
    body = encode({"id": 3})
    await deliver(
        anonymous, shopify_store, body, shopify_headers(shopify_store, body, topic="orders/delete")
    )

    response = await account.client.get(deliveries_url(shopify_store))

    assert response.status_code == 200
    items = response.json()["items"]
    assert [(d["topic"], d["outcome"], d["platform_order_id"]) for d in items] == [
        ("orders/delete", "deleted", "3"),
        ("orders/create", "stored", "3"),
        ("orders/create", "stored", "2"),
        ("orders/create", "stored", "1"),
    ]
    assert set(items[0]) == {
        "delivery_id",
        "topic",
        "platform_order_id",
        "outcome",
        "body_bytes",
        "received_at",
        "reason",
    }


async def test_twenty_by_default_and_a_limit(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store
) -> None:
    for order_id in range(22):
        await send_order(anonymous, shopify_store, order_id)

    assert len((await seller.client.get(deliveries_url(shopify_store))).json()["items"]) == 20
    assert len((await seller.client.get(deliveries_url(shopify_store, 5))).json()["items"]) == 5
    too_many = await seller.client.get(deliveries_url(shopify_store, 101))
    assert too_many.status_code == 422


async def test_another_integrations_deliveries_are_not_listed(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store, woo_store: Store
) -> None:
    await send_order(anonymous, woo_store, 727)

    response = await seller.client.get(deliveries_url(shopify_store))

    assert response.json() == {"items": []}
