"""The simulated stores' deliveries, signed as the platforms sign them, are taken by Astra's
own webhook endpoint and land as orders: the simulators speak the receiver's language."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.stores.api import ShopifyAppCredentials, StoreApi, WooCommerceCredentials
from testkit.simulators.server import StoreServer
from testkit.simulators.shopify import SimulatedShopify
from testkit.simulators.woocommerce import SimulatedWooCommerce
from testkit.stores import connect_store, orders_of
from tests.conftest import Account, client_for


@pytest.fixture
async def astra(app: object) -> AsyncIterator[httpx.AsyncClient]:
    """The in-process app as the stores reach it: any https address lands there."""
    async with client_for(app) as client:
        yield client


async def test_shopify_deliveries_land_as_orders(
    store_server: StoreServer,
    fresh_domain: Callable[[str], str],
    seller: Account,
    owner_engine: AsyncEngine,
    astra: httpx.AsyncClient,
) -> None:
    shop = store_server.add(SimulatedShopify(fresh_domain("landing{}.myshopify.com")))
    shop.delivery_client = astra
    app = shop.install_app()
    store = await connect_store(seller, "shopify", shop.domain)
    # Shopify signs an app's webhooks with the app's client secret.
    response = await seller.client.post(
        f"/api/integrations/{store.id}/secret", json={"webhook_secret": app.client_secret}
    )
    assert response.status_code == 200, response.text
    address = f"https://astra.example.com{store.url}"
    credentials = ShopifyAppCredentials(app.client_id or "", app.client_secret)
    async with StoreApi(store_server.settings(), shop.domain, credentials) as api:
        await api.register_webhooks(address, "unused by Shopify")
    order = next(iter(shop.orders.values()))
    [attempt] = await shop.fire("orders/create", order)
    assert attempt.status == 200
    shop.touch(order)
    [attempt] = await shop.fire("orders/updated", order)
    assert attempt.status == 200
    [row] = await orders_of(owner_engine, store)
    assert row["platform_order_id"] == str(order.id)
    assert row["order_number"] == f"#{order.number}"
    assert row["source_updated_at"] == order.updated_at.replace(microsecond=0)


async def test_woocommerce_pings_and_deliveries_land(
    store_server: StoreServer,
    fresh_domain: Callable[[str], str],
    seller: Account,
    owner_engine: AsyncEngine,
    astra: httpx.AsyncClient,
) -> None:
    woo = store_server.add(SimulatedWooCommerce(fresh_domain("landing{}.example.com")))
    woo.delivery_client = astra
    key = woo.add_key()
    store = await connect_store(seller, "woocommerce", woo.domain)
    address = f"https://astra.example.com{store.url}"
    credentials = WooCommerceCredentials(key.consumer_key, key.consumer_secret)
    async with StoreApi(store_server.settings(), woo.domain, credentials) as api:
        await api.register_webhooks(address, store.secret)
    assert [status for _, status in woo.pings] == [200] * 4
    order = next(iter(woo.orders.values()))
    [attempt] = await woo.fire("order.created", order)
    assert attempt.status == 200
    [attempt] = await woo.fire("order.deleted", order)
    assert attempt.status == 200
    [row] = await orders_of(owner_engine, store)
    assert row["platform_order_id"] == str(order.id)
    assert row["deleted_at"] is not None
