"""The platform-neutral facade against both simulated stores: checks, token caching and
renewal, idempotent webhook set-up, live states, removal, and the problems on the way."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from astra.stores.api import (
    CheckResult,
    RemoteWebhook,
    ShopifyAppCredentials,
    ShopifyLegacyCredentials,
    StoreApi,
    WooCommerceCredentials,
)
from astra.stores.problems import StoreProblem
from astra.stores.shopify import AccessToken
from testkit.simulators.server import StoreServer
from testkit.simulators.shopify import App, SimulatedShopify
from testkit.simulators.woocommerce import Key, SimulatedWooCommerce

ADDRESS = "https://astra.example.com/api/webhooks/order?id=0b6f6d0e"
SECRET = "whsec-astra-1"
SHOPIFY_TOPICS = ["orders/create", "orders/updated", "orders/delete"]
WOO_TOPICS = ["order.created", "order.updated", "order.deleted", "order.restored"]


@pytest.fixture
def shop(store_server: StoreServer, fresh_domain: Callable[[str], str]) -> SimulatedShopify:
    return store_server.add(
        SimulatedShopify(fresh_domain("atelier{}.myshopify.com"), name="Atelier")
    )


@pytest.fixture
def woo(store_server: StoreServer, fresh_domain: Callable[[str], str]) -> SimulatedWooCommerce:
    return store_server.add(SimulatedWooCommerce(fresh_domain("beans{}.example.com"), name="Beans"))


def app_credentials(app: App) -> ShopifyAppCredentials:
    assert app.client_id is not None
    return ShopifyAppCredentials(app.client_id, app.client_secret)


def woo_credentials(key: Key) -> WooCommerceCredentials:
    return WooCommerceCredentials(key.consumer_key, key.consumer_secret)


def statuses(hooks: Sequence[RemoteWebhook]) -> dict[str, str]:
    return {hook.topic: hook.status for hook in hooks}


# --- Shopify --------------------------------------------------------------------------


async def test_a_shopify_app_checks_and_hands_back_its_token(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = app_credentials(shop.install_app(["read_orders"]))
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        result = await store.check()
    assert result == CheckResult(
        "Atelier",
        ("read_orders",),
        (
            "Shopify shows Astra only the last 60 days of orders. Add the read_all_orders "
            "scope to the app to include older ones.",
        ),
    )
    assert store.token is not None
    assert store.token.expires_at is not None
    assert store.token.expires_at > datetime.now(UTC) + timedelta(hours=23)
    # The cached token is used as it is next time: no new grant.
    async with StoreApi(
        store_server.settings(), shop.domain, credentials, token=store.token
    ) as again:
        assert (await again.check()).shop_name == "Atelier"
    assert again.token == store.token
    assert shop.token_requests == 1


async def test_read_all_orders_leaves_no_note(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = app_credentials(shop.install_app(["read_orders", "read_all_orders"]))
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        assert (await store.check()).notes == ()


async def test_a_token_near_its_expiry_is_renewed_before_use(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = app_credentials(shop.install_app())
    shop.token_lifetime = 120  # inside the five-minute margin
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        await store.check()
    first = store.token
    async with StoreApi(store_server.settings(), shop.domain, credentials, token=first) as again:
        await again.check()
    assert again.token != first
    assert shop.token_requests == 2
    assert shop.requests == ["AstraCheck", "AstraCheck"]  # no call was made with the old one


async def test_a_token_the_store_rejects_is_renewed_once(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = app_credentials(shop.install_app())
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        await store.check()
    cached = store.token
    shop.expire_tokens()  # still valid by its own expiry, refused by Shopify
    async with StoreApi(store_server.settings(), shop.domain, credentials, token=cached) as again:
        assert (await again.check()).shop_name == "Atelier"
    assert again.token != cached
    assert shop.token_requests == 2


async def test_a_renewed_token_rejected_again_is_not_renewed_a_second_time(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = app_credentials(shop.install_app())
    stale = AccessToken("shpat_" + "9" * 32, datetime.now(UTC) + timedelta(hours=12))
    shop.token_lifetime = 0  # every token it gives is already expired
    async with StoreApi(store_server.settings(), shop.domain, credentials, token=stale) as store:
        with pytest.raises(StoreProblem) as caught:
            await store.check()
    assert caught.value.problem == "invalid_credentials"
    assert "still installed" in caught.value.message
    assert shop.token_requests == 1


async def test_wrong_client_credentials(store_server: StoreServer, shop: SimulatedShopify) -> None:
    app = shop.install_app()
    credentials = ShopifyAppCredentials(app.client_id or "", "shpss_not-the-secret")
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        with pytest.raises(StoreProblem) as caught:
            await store.check()
    assert caught.value.problem == "invalid_credentials"
    assert "shpss_not-the-secret" not in caught.value.message
    assert "shpss_not-the-secret" not in repr(credentials)


async def test_credentials_of_another_store_are_the_wrong_store(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    shop.myshopify_domain = "someone-else.myshopify.com"
    credentials = app_credentials(shop.install_app())
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        with pytest.raises(StoreProblem) as caught:
            await store.check()
        with pytest.raises(StoreProblem) as registering:
            await store.register_webhooks(ADDRESS, SECRET)
    assert caught.value.problem == registering.value.problem == "wrong_store"
    assert "someone-else.myshopify.com" in caught.value.message
    assert shop.subscriptions == {}


async def test_an_app_that_cannot_read_orders_misses_a_scope(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = app_credentials(shop.install_app(["read_products"]))
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        with pytest.raises(StoreProblem) as caught:
            await store.check()
    assert caught.value.problem == "missing_scope"


async def test_a_legacy_token_checks_and_notes_a_missing_secret(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    app = shop.install_legacy_app(["read_orders", "read_all_orders"])
    credentials = ShopifyLegacyCredentials(app.legacy_token or "")
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        result = await store.check()
    assert result.shop_name == "Atelier"
    assert len(result.notes) == 1
    assert "API secret key" in result.notes[0]
    assert store.token is None
    assert shop.token_requests == 0


async def test_a_wrong_legacy_token_is_rejected_without_renewal(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = ShopifyLegacyCredentials("shpat_" + "3" * 32, "secret")
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        with pytest.raises(StoreProblem) as caught:
            await store.check()
    assert caught.value.problem == "invalid_credentials"
    assert "Admin API access token" in caught.value.message


async def test_shopify_webhooks_are_registered_once(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = app_credentials(shop.install_app())
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        first = await store.register_webhooks(ADDRESS, SECRET)
        second = await store.register_webhooks(ADDRESS, SECRET)
        states = await store.webhook_states(ADDRESS)
    assert [hook.topic for hook in first] == SHOPIFY_TOPICS
    assert statuses(first) == dict.fromkeys(SHOPIFY_TOPICS, "active")
    assert second == first == states
    assert len(shop.subscriptions) == 3


async def test_a_subscription_shopify_deleted_after_failures_shows_as_missing(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = app_credentials(shop.install_app())
    receiver = store_server.receiver(f"gone-{shop.domain}", status=500)
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        await store.register_webhooks(receiver.url, SECRET)
        await shop.fire("orders/create", next(iter(shop.orders.values())))
        await shop.exhaust_retries()
        states = await store.webhook_states(receiver.url)
        assert statuses(states) == {
            "orders/create": "missing",
            "orders/updated": "active",
            "orders/delete": "active",
        }
        again = await store.register_webhooks(receiver.url, SECRET)
    assert statuses(again) == dict.fromkeys(SHOPIFY_TOPICS, "active")
    assert len(shop.subscriptions) == 3


async def test_shopify_webhooks_are_removed(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    credentials = app_credentials(shop.install_app())
    async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
        await store.register_webhooks(ADDRESS, SECRET)
        await store.register_webhooks(ADDRESS + "-other", SECRET)
        await store.remove_webhooks(ADDRESS)
        assert statuses(await store.webhook_states(ADDRESS)) == dict.fromkeys(
            SHOPIFY_TOPICS, "missing"
        )
        assert statuses(await store.webhook_states(ADDRESS + "-other")) == dict.fromkeys(
            SHOPIFY_TOPICS, "active"
        )


# --- WooCommerce ----------------------------------------------------------------------


async def test_a_woocommerce_key_checks(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    async with StoreApi(
        store_server.settings(), woo.domain, woo_credentials(woo.add_key("read"))
    ) as store:
        assert await store.check() == CheckResult("Beans")
    assert store.token is None


async def test_woocommerce_webhooks_are_registered_once_with_our_secret(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    receiver = store_server.receiver(f"woo-{woo.domain}")
    async with StoreApi(
        store_server.settings(), woo.domain, woo_credentials(woo.add_key())
    ) as store:
        first = await store.register_webhooks(receiver.url, SECRET)
        second = await store.register_webhooks(receiver.url, SECRET)
        states = await store.webhook_states(receiver.url)
    assert [hook.topic for hook in first] == WOO_TOPICS
    assert statuses(first) == dict.fromkeys(WOO_TOPICS, "active")
    assert second == first == states
    assert len(woo.webhooks) == 4
    assert {hook.secret for hook in woo.webhooks.values()} == {SECRET}
    assert len(woo.pings) == 4  # one per webhook, when it was made


async def test_a_webhook_woocommerce_disabled_shows_and_registering_re_enables_it(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    receiver = store_server.receiver(f"woo-flaky-{woo.domain}")
    async with StoreApi(
        store_server.settings(), woo.domain, woo_credentials(woo.add_key())
    ) as store:
        await store.register_webhooks(receiver.url, SECRET)
        receiver.status = 500
        order = next(iter(woo.orders.values()))
        for _ in range(7):
            await woo.fire("order.updated", order)
        states = await store.webhook_states(receiver.url)
        assert statuses(states)["order.updated"] == "disabled"
        assert sum(hook.status == "active" for hook in states) == 3
        receiver.status = 200
        again = await store.register_webhooks(receiver.url, "whsec-astra-2")
    assert statuses(again) == dict.fromkeys(WOO_TOPICS, "active")
    assert [hook.remote_id for hook in again] == [hook.remote_id for hook in states]
    assert len(woo.webhooks) == 4
    # A rotated secret reaches the store with the next registration.
    assert {hook.secret for hook in woo.webhooks.values()} == {"whsec-astra-2"}
    [attempt] = await woo.fire("order.updated", order)
    assert attempt.status == 200


async def test_woocommerce_webhooks_are_removed(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    async with StoreApi(
        store_server.settings(), woo.domain, woo_credentials(woo.add_key())
    ) as store:
        await store.register_webhooks(ADDRESS, SECRET)
        await store.remove_webhooks(ADDRESS)
        assert statuses(await store.webhook_states(ADDRESS)) == dict.fromkeys(WOO_TOPICS, "missing")
    assert woo.webhooks == {}


async def test_a_stalled_store_is_a_timeout_through_the_facade(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    woo.stall_seconds = 2.0
    settings = store_server.settings(store_api_timeout_seconds=0.3)
    async with StoreApi(settings, woo.domain, woo_credentials(woo.add_key())) as store:
        with pytest.raises(StoreProblem) as caught:
            await store.check()
    assert caught.value.problem == "timeout"


async def test_a_store_resolving_to_loopback_is_refused_through_the_facade(
    store_server: StoreServer, shop: SimulatedShopify
) -> None:
    async def loopback(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"]

    credentials = app_credentials(shop.install_app())
    settings = store_server.settings(store_api_url="https://{domain}")
    async with StoreApi(settings, shop.domain, credentials, resolver=loopback) as store:
        with pytest.raises(StoreProblem) as caught:
            await store.check()
    assert caught.value.problem == "refused_address"
    assert shop.token_requests == 0


async def test_no_secret_reaches_a_log_line_or_a_message(
    store_server: StoreServer,
    shop: SimulatedShopify,
    woo: SimulatedWooCommerce,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    app = shop.install_app()
    key = woo.add_key()
    problems: list[StoreProblem] = []
    async with StoreApi(store_server.settings(), shop.domain, app_credentials(app)) as store:
        await store.register_webhooks(ADDRESS, SECRET)
        await store.webhook_states(ADDRESS)
        token = store.token
    async with StoreApi(store_server.settings(), woo.domain, woo_credentials(key)) as store:
        await store.register_webhooks(ADDRESS, SECRET)
    wrong = [
        ShopifyAppCredentials(app.client_id or "", app.client_secret + "x"),
        ShopifyLegacyCredentials(app.client_secret),
    ]
    for credentials in wrong:
        async with StoreApi(store_server.settings(), shop.domain, credentials) as store:
            with pytest.raises(StoreProblem) as caught:
                await store.check()
            problems.append(caught.value)
    async with StoreApi(
        store_server.settings(), woo.domain, WooCommerceCredentials(key.consumer_key, "cs_wrong")
    ) as store:
        with pytest.raises(StoreProblem) as caught:
            await store.check()
        problems.append(caught.value)
    assert token is not None
    basic = base64.b64encode(f"{key.consumer_key}:{key.consumer_secret}".encode()).decode()
    secrets = [
        app.client_secret,
        token.value,
        key.consumer_key,
        key.consumer_secret,
        basic,
        SECRET,
        "cs_wrong",
    ]
    logged = [str(record.__dict__) for record in caplog.records]
    assert any("store call" in line for line in logged)  # the calls were logged
    for secret in secrets:
        assert not any(secret in line for line in logged), secret
        assert not any(secret in problem.message for problem in problems), secret
