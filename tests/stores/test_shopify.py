"""The Shopify client against the simulated Shopify, over real HTTPS: the token grant and
its refusals, the GraphQL Admin API and its errors, throttling, webhook subscriptions and
their deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from graphql import parse, validate

from astra.stores import shopify
from astra.stores.net import StoreHttp
from astra.stores.problems import StoreProblem
from astra.stores.shopify import AccessToken, ShopifyAdmin, TokenRejected, request_token
from testkit.simulators.server import StoreServer
from testkit.simulators.shopify import App, SimulatedShopify, schema

ADDRESS = "https://astra.example.com/api/webhooks/order?id=7d1c"


@pytest.fixture
def shop(store_server: StoreServer, fresh_domain: Callable[[str], str]) -> SimulatedShopify:
    return store_server.add(
        SimulatedShopify(fresh_domain("linen{}.myshopify.com"), name="Linen & Co")
    )


@asynccontextmanager
async def admin(
    server: StoreServer, shop: SimulatedShopify, app: App
) -> AsyncIterator[ShopifyAdmin]:
    async with StoreHttp(server.settings(), shop.domain) as http:
        assert app.client_id is not None
        token = await request_token(http, app.client_id, app.client_secret)
        yield ShopifyAdmin(http, token)


def test_every_operation_astra_sends_validates_against_shopifys_names() -> None:
    for document in (
        shopify._SHOP_QUERY,
        shopify._LIST_QUERY,
        shopify._CREATE_MUTATION,
        shopify._DELETE_MUTATION,
    ):
        assert validate(schema(), parse(document)) == []


async def test_a_misspelt_field_is_refused_as_shopify_refuses_it(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    async with admin(store_server, shop, shop.install_app()) as api:
        with pytest.raises(StoreProblem) as caught:
            await api.query("{ shop { nam } }")
    assert caught.value.problem == "store_unavailable"


async def test_the_client_credentials_grant_gives_a_token_that_expires(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    app = shop.install_app(["read_orders", "read_all_orders"])
    async with StoreHttp(store_server.settings(), shop.domain) as http:
        token = await request_token(http, app.client_id or "", app.client_secret)
    assert token.value.startswith("shpat_")
    assert token.expires_at is not None
    expected = datetime.now(UTC) + timedelta(seconds=shop.token_lifetime)
    assert abs(token.expires_at - expected) < timedelta(seconds=5)
    assert "hidden" in repr(token)
    assert token.value not in repr(token)


@pytest.mark.parametrize(
    ("arrange", "fragment"),
    [
        (
            lambda app: setattr(app, "secret", "shpss_rotated"),
            "rejected the client ID or client secret",
        ),
        (lambda app: setattr(app, "installed", False), "isn't installed on"),
        (lambda app: setattr(app, "same_organization", False), "organization owns"),
    ],
)
async def test_a_refused_grant_is_invalid_credentials_saying_why(
    store_server: StoreServer,
    shop: SimulatedShopify,
    arrange: Callable[[App], None],
    fragment: str,
) -> None:
    app = shop.install_app()
    secret_we_hold = app.client_secret
    arrange(app)
    async with StoreHttp(store_server.settings(), shop.domain) as http:
        with pytest.raises(StoreProblem) as caught:
            await request_token(http, app.client_id or "", secret_we_hold)
    assert caught.value.problem == "invalid_credentials"
    assert fragment in caught.value.message
    assert secret_we_hold not in caught.value.message


async def test_the_check_reads_the_shop_and_the_granted_scopes(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    async with admin(store_server, shop, shop.install_app(["read_orders"])) as api:
        info = await api.shop()
    assert info.name == "Linen & Co"
    assert info.myshopify_domain == shop.domain
    assert info.scopes == ("read_orders",)
    assert info.reads_orders


async def test_an_expired_token_is_rejected(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    async with admin(store_server, shop, shop.install_app()) as api:
        await api.shop()
        shop.advance_clock(shop.token_lifetime + 1)
        with pytest.raises(TokenRejected) as caught:
            await api.shop()
    assert caught.value.problem == "invalid_credentials"


async def test_a_made_up_token_is_rejected(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    async with StoreHttp(store_server.settings(), shop.domain) as http:
        api = ShopifyAdmin(http, AccessToken("shpat_" + "0" * 32, None))
        with pytest.raises(TokenRejected):
            await api.shop()


@pytest.mark.parametrize(("state", "fragment"), [("frozen", "frozen"), ("locked", "locked")])
async def test_a_frozen_or_locked_store_is_unavailable_saying_which(
    store_server: StoreServer, shop: SimulatedShopify, state: str, fragment: str
) -> None:
    async with admin(store_server, shop, shop.install_app()) as api:
        shop.state = state  # type: ignore[assignment]
        with pytest.raises(StoreProblem) as caught:
            await api.shop()
    assert caught.value.problem == "store_unavailable"
    assert fragment in caught.value.message


async def test_a_throttled_call_waits_for_the_bucket_and_goes_through(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    async with admin(store_server, shop, shop.install_app()) as api:
        shop.drain_throttle(0.0)
        info = await api.shop()
    assert info.name == "Linen & Co"
    assert shop.requests == ["AstraCheck", "AstraCheck"]


async def test_a_call_throttled_for_longer_than_astra_waits_is_unavailable(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    shop.restore_rate = 0.1
    async with admin(store_server, shop, shop.install_app()) as api:
        shop.drain_throttle(0.0)
        with pytest.raises(StoreProblem) as caught:
            await api.shop()
    assert caught.value.problem == "store_unavailable"
    assert "limiting how fast" in caught.value.message
    assert shop.requests == ["AstraCheck"]


async def test_subscribing_without_read_orders_is_a_missing_scope(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    async with admin(store_server, shop, shop.install_app(["read_products"])) as api:
        with pytest.raises(StoreProblem) as caught:
            await api.subscribe("orders/create", ADDRESS)
    assert caught.value.problem == "missing_scope"
    assert "read_orders" in caught.value.message


async def test_an_app_without_protected_customer_data_cannot_subscribe_to_orders(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    async with admin(store_server, shop, shop.install_app(protected_data=False)) as api:
        with pytest.raises(StoreProblem) as caught:
            await api.subscribe("orders/create", ADDRESS)
    assert caught.value.problem == "missing_scope"
    assert "Protected customer data" in caught.value.message


async def test_subscriptions_are_created_listed_refused_twice_and_deleted(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    app = shop.install_app()
    other = shop.install_app()
    async with admin(store_server, shop, app) as api:
        created = [await api.subscribe(topic, ADDRESS) for topic in shopify.ORDER_TOPICS]
        assert all(sub is not None for sub in created)
        # Shopify refuses the same topic and address twice.
        assert await api.subscribe("orders/create", ADDRESS) is None
        listed = await api.subscriptions(ADDRESS)
        assert {sub.topic for sub in listed} == set(shopify.ORDER_TOPICS)
        assert await api.subscriptions(ADDRESS + "-elsewhere") == []
        for sub in listed:
            await api.unsubscribe(sub.remote_id)
        await api.unsubscribe(listed[0].remote_id)  # already gone: fine
        assert await api.subscriptions(ADDRESS) == []
    async with admin(store_server, shop, other) as api:
        assert await api.subscriptions(ADDRESS) == []  # each app sees its own only


async def test_an_http_address_is_refused(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    async with admin(store_server, shop, shop.install_app()) as api:
        with pytest.raises(StoreProblem) as caught:
            await api.subscribe("orders/create", "http://astra.example.com/hook")
    assert caught.value.problem == "store_unavailable"
    assert shop.subscriptions == {}


async def test_deliveries_are_signed_with_the_apps_client_secret(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    app = shop.install_app()
    receiver = store_server.receiver(f"shopify-{shop.domain}")
    async with admin(store_server, shop, app) as api:
        await api.subscribe("orders/create", receiver.url)
    order = next(iter(shop.orders.values()))
    [attempt] = await shop.fire("orders/create", order)
    assert attempt.status == 200
    [delivery] = receiver.requests
    expected = base64.b64encode(
        hmac.new(app.client_secret.encode(), delivery.body, hashlib.sha256).digest()
    )
    assert delivery.headers["x-shopify-hmac-sha256"] == expected.decode()
    assert delivery.headers["x-shopify-topic"] == "orders/create"
    assert delivery.headers["x-shopify-shop-domain"] == shop.domain
    assert delivery.headers["x-shopify-api-version"] == shopify.API_VERSION
    assert json.loads(delivery.body)["id"] == order.id


async def test_eight_failed_deliveries_in_a_row_delete_the_subscription(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    app = shop.install_app()
    receiver = store_server.receiver(f"failing-{shop.domain}", status=500)
    async with admin(store_server, shop, app) as api:
        await api.subscribe("orders/updated", receiver.url)
        order = next(iter(shop.orders.values()))
        await shop.fire("orders/updated", order)
        await shop.retry_failed()
        assert len(await api.subscriptions(receiver.url)) == 1  # two failures: still there
        attempts = await shop.exhaust_retries()
        assert attempts[-1].removed
        assert len(receiver.requests) == 8
        assert await api.subscriptions(receiver.url) == []
