"""Listing a store's orders page by page (for issue 12's sync), against both simulators:
every order once, oldest update first, filtered by update time, in the webhook shape that
Astra's own rules read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest

from astra.stores.api import ShopifyAppCredentials, StoreApi, WooCommerceCredentials
from astra.stores.problems import StoreProblem, retry_after
from astra.webhooks.platforms import PLATFORMS, parse_payload
from testkit.simulators.server import StoreServer
from testkit.simulators.shopify import SimulatedShopify
from testkit.simulators.woocommerce import SimulatedWooCommerce


async def every_page(
    store: StoreApi, cursor: str | None = None, **filters: Any
) -> tuple[list[dict[str, Any]], int]:
    orders, pages = [], 0
    while True:
        page = await store.orders(cursor=cursor, **filters)
        orders += page.orders
        pages += 1
        if page.next_cursor is None:
            return orders, pages
        cursor = page.next_cursor


def shopify_store(
    server: StoreServer, domain: str, scopes: list[str]
) -> tuple[SimulatedShopify, StoreApi]:
    shop = server.add(SimulatedShopify(domain, seed=7, order_count=230))
    app = shop.install_app(scopes)
    return shop, StoreApi(
        server.settings(),
        shop.domain,
        ShopifyAppCredentials(app.client_id or "", app.client_secret),
    )


def woocommerce_store(
    server: StoreServer, domain: str, *, seed: int
) -> tuple[SimulatedWooCommerce, StoreApi]:
    woo = server.add(SimulatedWooCommerce(domain, seed=seed, order_count=230))
    key = woo.add_key("read")
    return woo, StoreApi(
        server.settings(),
        woo.domain,
        WooCommerceCredentials(key.consumer_key, key.consumer_secret),
    )


async def test_shopify_orders_come_page_by_page_oldest_update_first(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    shop, api = shopify_store(
        store_server, fresh_domain("many{}.myshopify.com"), ["read_orders", "read_all_orders"]
    )
    async with api as store:
        orders, pages = await every_page(store)
    assert pages == 3
    assert sorted(o["id"] for o in orders) == sorted(shop.orders)
    updated = [o["updated_at"] for o in orders]
    assert updated == sorted(updated)
    # The sync's rows are read by the same rules as the webhooks'.
    first = min(shop.orders.values(), key=lambda o: (o.updated_at, o.id))
    version = PLATFORMS["shopify"].order_version(parse_payload(orjson.dumps(orders[0])))
    assert version.platform_order_id == str(first.id)
    assert version.order_number == f"#{first.number}"
    assert version.total == first.total
    assert version.source_updated_at == first.updated_at.replace(microsecond=0)


async def test_without_read_all_orders_shopify_lists_the_last_60_days(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    shop, api = shopify_store(store_server, fresh_domain("recent{}.myshopify.com"), ["read_orders"])
    horizon = shop.now() - timedelta(days=60)
    async with api as store:
        orders, _ = await every_page(store)
    recent = {o.id for o in shop.orders.values() if o.created_at >= horizon}
    assert 0 < len(recent) < len(shop.orders)
    assert {o["id"] for o in orders} == recent


async def test_shopify_orders_updated_since(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    shop, api = shopify_store(
        store_server, fresh_domain("since{}.myshopify.com"), ["read_orders", "read_all_orders"]
    )
    since = shop.now() - timedelta(days=30)
    async with api as store:
        orders, _ = await every_page(store, updated_since=since)
    expected = {
        o.id
        for o in shop.orders.values()
        if o.updated_at.replace(microsecond=0) >= since.replace(microsecond=0)
    }
    assert {o["id"] for o in orders} == expected
    assert 0 < len(expected) < len(shop.orders)


async def test_shopify_paging_waits_out_the_throttle(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    shop, api = shopify_store(
        store_server, fresh_domain("busy{}.myshopify.com"), ["read_orders", "read_all_orders"]
    )
    shop.maximum_available = shop.currently_available = 400.0  # one page's worth at a time
    shop.restore_rate = 1000.0
    async with api as store:
        orders, _ = await every_page(store)
    assert len(orders) == len(shop.orders)
    assert shop.requests.count("AstraOrders") > 3  # some pages were sent twice


async def test_listing_orders_without_read_orders_is_access_denied(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    _, api = shopify_store(store_server, fresh_domain("denied{}.myshopify.com"), ["read_products"])
    async with api as store:
        with pytest.raises(StoreProblem) as caught:
            await store.orders()
    assert caught.value.problem == "missing_scope"


async def test_woocommerce_orders_come_page_by_page_with_their_total(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    woo, api = woocommerce_store(store_server, fresh_domain("cups{}.example.com"), seed=3)
    since = woo.now() - timedelta(days=30)
    async with api as store:
        first = await store.orders()
        orders, pages = await every_page(store)
        recent, _ = await every_page(store, updated_since=since)
    assert first.total == 230
    assert pages == 3
    assert sorted(o["id"] for o in orders) == sorted(woo.orders)
    modified = [o["date_modified_gmt"] for o in orders]
    assert modified == sorted(modified)
    assert {o["id"] for o in recent} == {
        o.id
        for o in woo.orders.values()
        if o.updated_at.replace(microsecond=0) > since.replace(microsecond=0)
    }
    version = PLATFORMS["woocommerce"].order_version(parse_payload(orjson.dumps(orders[0])))
    assert version.platform_order_id == str(orders[0]["id"])


async def test_a_woocommerce_walk_skips_no_order_when_orders_change_meanwhile(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    """A change moves the order to the end and every later one a place forward: by page
    numbers alone, the first order of the next page would slip into the page already read."""
    woo, api = woocommerce_store(store_server, fresh_domain("moving{}.example.com"), seed=4)
    async with api as store:
        first = await store.orders()
        woo.touch(woo.orders[first.orders[0]["id"]])
        rest, _ = await every_page(store, cursor=first.next_cursor)
    listed = [o["id"] for o in first.orders + rest]
    assert set(listed) == set(woo.orders)
    # The changed order comes again, in its new version; no other order twice.
    assert len(listed) == len(woo.orders) + 1


async def test_a_busy_store_says_when_to_come_back(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    shop, api = shopify_store(store_server, fresh_domain("busy{}.myshopify.com"), ["read_orders"])
    async with api as store:
        shop.answer_busy(429, retry_after="7")
        with pytest.raises(StoreProblem) as caught:
            await store.orders()
        assert (caught.value.transient, caught.value.retry_after) == (True, 7.0)
        shop.answer_busy(503)
        with pytest.raises(StoreProblem) as caught:
            await store.orders()
        assert (caught.value.transient, caught.value.retry_after) == (True, None)
        shop.apps.clear()  # the app was uninstalled: no point in trying again soon
        with pytest.raises(StoreProblem) as caught:
            await store.orders()
        assert caught.value.problem == "invalid_credentials"
        assert not caught.value.transient


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("3") == 3.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("-4") == 0.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after(later) or 0) <= 30
    assert retry_after("soon") is None
    assert retry_after(None) is None
