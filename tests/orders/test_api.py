"""GET /api/orders, and the order stats on every integration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from astra.db.session import Transaction
from testkit.stores import (
    Store,
    connect_store,
    deliver,
    encode,
    send_order,
    shopify_headers,
)
from tests.conftest import Account


@pytest.fixture
async def shopify_store(seller: Account) -> Store:
    return await connect_store(seller, "shopify", "linen-and-co.myshopify.com")


@pytest.fixture
async def other_store(other_seller: Account) -> Store:
    return await connect_store(other_seller, "woocommerce", "other.example.com")


async def delete_order(client: httpx.AsyncClient, store: Store, order_id: int) -> None:
    body = encode({"id": order_id})
    response = await deliver(
        client, store, body, shopify_headers(store, body, topic="orders/delete")
    )
    assert response.json() == {"outcome": "deleted"}


def order_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["platform_order_id"] for item in response.json()["items"]]


async def test_anonymous_is_401(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/api/orders")).status_code == 401


async def test_owner_sees_own_orders_newest_first(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store, other_store: Store
) -> None:
    for order_id in (1, 2, 3):
        await send_order(anonymous, shopify_store, order_id)
    await send_order(anonymous, other_store, 99)

    response = await seller.client.get("/api/orders")

    assert order_ids(response) == ["3", "2", "1"]
    item = response.json()["items"][0]
    assert item["integration_id"] == str(shopify_store.id)
    assert item["total"] == "199.00"
    assert item["order_number"] == "#1001"
    assert item["platform"] == "shopify"
    assert item["origin"] == "webhook"
    assert "raw" not in item
    assert response.json()["next_cursor"] is None


async def test_filter_by_integration(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store
) -> None:
    second = await connect_store(seller, "woocommerce", "cups.example.com")
    await send_order(anonymous, shopify_store, 1)
    await send_order(anonymous, second, 2)

    response = await seller.client.get(f"/api/orders?integration_id={second.id}")

    assert order_ids(response) == ["2"]


async def test_other_seller_sees_none_of_them_and_403_for_the_integration(
    anonymous: httpx.AsyncClient, other_seller: Account, shopify_store: Store
) -> None:
    await send_order(anonymous, shopify_store, 1)

    assert order_ids(await other_seller.client.get("/api/orders")) == []
    foreign = await other_seller.client.get(f"/api/orders?integration_id={shopify_store.id}")
    assert foreign.status_code == 403


async def test_admin_sees_every_sellers_orders(
    anonymous: httpx.AsyncClient, admin: Account, shopify_store: Store, other_store: Store
) -> None:
    await send_order(anonymous, shopify_store, 1)
    await send_order(anonymous, other_store, 2)

    assert sorted(order_ids(await admin.client.get("/api/orders"))) == ["1", "2"]
    scoped = await admin.client.get(f"/api/orders?integration_id={other_store.id}")
    assert order_ids(scoped) == ["2"]


async def test_unknown_or_malformed_integration(seller: Account) -> None:
    assert (
        await seller.client.get(f"/api/orders?integration_id={uuid.uuid4()}")
    ).status_code == 404
    assert (await seller.client.get("/api/orders?integration_id=nope")).status_code == 422


async def test_keyset_pages_cover_every_order_once(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store
) -> None:
    for order_id in range(7):
        await send_order(anonymous, shopify_store, order_id)

    seen: list[str] = []
    url = "/api/orders?limit=3"
    while True:
        page = (await seller.client.get(url)).json()
        seen += [item["platform_order_id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"/api/orders?limit=3&cursor={page['next_cursor']}"

    assert seen == [str(n) for n in reversed(range(7))]


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "cursor=%%%", "cursor=bm9wZQ"])
async def test_bad_paging_is_422(seller: Account, query: str) -> None:
    assert (await seller.client.get(f"/api/orders?{query}")).status_code == 422


async def test_deleted_orders_are_left_out(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store
) -> None:
    for order_id in (1, 2):
        await send_order(anonymous, shopify_store, order_id)
    await delete_order(anonymous, shopify_store, 1)

    assert order_ids(await seller.client.get("/api/orders")) == ["2"]


async def test_integration_json_counts_live_orders_and_the_newest_arrival(
    anonymous: httpx.AsyncClient,
    seller: Account,
    admin: Account,
    shopify_store: Store,
    other_store: Store,
) -> None:
    fresh = (await seller.client.get(f"/api/integrations/{shopify_store.id}")).json()
    assert (fresh["order_count"], fresh["last_order_at"]) == (0, None)

    for order_id in (1, 2, 3):
        await send_order(anonymous, shopify_store, order_id)
    await delete_order(anonymous, shopify_store, 3)
    await send_order(anonymous, other_store, 9)
    newest = (await seller.client.get("/api/orders?limit=1")).json()["items"][0]

    listed = (await seller.client.get("/api/integrations")).json()["items"]
    one = (await seller.client.get(f"/api/integrations/{shopify_store.id}")).json()
    everyone = {
        item["id"]: item for item in (await admin.client.get("/api/integrations")).json()["items"]
    }

    assert [(i["order_count"], i["last_order_at"]) for i in listed] == [(2, newest["received_at"])]
    assert (one["order_count"], one["last_order_at"]) == (2, newest["received_at"])
    assert everyone[str(other_store.id)]["order_count"] == 1
    assert everyone[str(shopify_store.id)]["order_count"] == 2


@contextmanager
def count_statements() -> Iterator[list[str]]:
    """The statements every transaction runs while the block runs (the real executor,
    watched)."""
    statements: list[str] = []
    execute = Transaction.execute

    async def record(self: Transaction, statement: Any, parameters: Any = None) -> Any:
        statements.append(str(statement))
        return await execute(self, statement, parameters)

    Transaction.execute = record  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        Transaction.execute = execute  # type: ignore[method-assign]


async def test_stats_cost_no_query_per_integration(
    app: FastAPI, anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store
) -> None:
    await send_order(anonymous, shopify_store, 1)
    with count_statements() as one_store:
        await seller.client.get("/api/integrations")
    for n in range(5):
        store = await connect_store(seller, "woocommerce", f"shop{n}.example.com")
        await send_order(anonymous, store, n)
    with count_statements() as six_stores:
        listed = (await seller.client.get("/api/integrations")).json()["items"]

    assert len(listed) == 6
    assert all(item["order_count"] == 1 for item in listed)
    assert len(six_stores) == len(one_store)
