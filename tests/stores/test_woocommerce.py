"""The WooCommerce client against the simulated WooCommerce, over real HTTPS (and once over
plain HTTP): the key check and its refusals, the ?rest_route= fallback, webhooks, their
ping, their signed deliveries and their disabling."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from astra.settings import Settings
from astra.stores.net import StoreHttp
from astra.stores.problems import StoreProblem
from astra.stores.woocommerce import WooCommerceApi
from testkit.simulators.server import StoreServer
from testkit.simulators.woocommerce import Key, SimulatedWooCommerce

SECRET = "astra-webhook-secret-7f3a"


@pytest.fixture
def woo(store_server: StoreServer, fresh_domain: Callable[[str], str]) -> SimulatedWooCommerce:
    return store_server.add(
        SimulatedWooCommerce(fresh_domain("espresso{}.example.com"), name="Espresso Corner")
    )


@asynccontextmanager
async def api(
    server: StoreServer, woo: SimulatedWooCommerce, key: Key, settings: Settings | None = None
) -> AsyncIterator[WooCommerceApi]:
    async with StoreHttp(settings or server.settings(), woo.domain) as http:
        yield WooCommerceApi(http, key.consumer_key, key.consumer_secret)


async def test_a_working_key_checks_and_the_site_names_itself(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    async with api(store_server, woo, woo.add_key("read")) as client:
        assert await client.site_name() == "Espresso Corner"
        await client.check()
    assert woo.paths == ["/wp-json/", "/wp-json/wc/v3/orders"]


async def test_a_site_that_hides_its_rest_index_still_checks(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    woo.index_open = False
    async with api(store_server, woo, woo.add_key("read")) as client:
        assert await client.site_name() is None
        await client.check()


async def test_a_wrong_secret_is_rejected(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    key = woo.add_key()
    wrong = Key(key.consumer_key, "cs_" + "0" * 40)
    async with api(store_server, woo, wrong) as client:
        with pytest.raises(StoreProblem) as caught:
            await client.check()
    assert caught.value.problem == "invalid_credentials"
    assert "rejected the consumer secret" in caught.value.message


async def test_an_unknown_key_reads_as_anonymous_and_is_rejected(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    async with api(store_server, woo, Key("ck_" + "1" * 40, "cs_" + "2" * 40)) as client:
        with pytest.raises(StoreProblem) as caught:
            await client.check()
    assert caught.value.problem == "invalid_credentials"
    assert "doesn't know this consumer key, or the key can't read orders" in caught.value.message


async def test_basic_auth_over_plain_http_is_ignored_by_woocommerce(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    key = woo.add_key()
    settings = store_server.settings(store_api_url=store_server.http_url_template)
    async with api(store_server, woo, key, settings) as client:
        with pytest.raises(StoreProblem) as caught:
            await client.check()
    assert caught.value.problem == "invalid_credentials"
    assert "only over HTTPS" in caught.value.message


async def test_a_key_of_a_user_who_cannot_manage_the_shop_misses_a_scope(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    async with api(store_server, woo, woo.add_key(can_manage=False)) as client:
        with pytest.raises(StoreProblem) as caught:
            await client.check()
    assert caught.value.problem == "missing_scope"
    assert "administrator or shop manager" in caught.value.message


async def test_a_read_only_key_cannot_set_up_webhooks(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    async with api(store_server, woo, woo.add_key("read")) as client:
        assert await client.webhooks() == []
        with pytest.raises(StoreProblem) as caught:
            await client.create_webhook("order.created", "https://astra.example.com/h", SECRET)
    assert caught.value.problem == "missing_scope"
    assert "Read/Write" in caught.value.message
    assert woo.webhooks == {}


async def test_without_pretty_permalinks_the_route_goes_in_the_query_and_stays_there(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    woo.pretty_permalinks = False
    async with api(store_server, woo, woo.add_key()) as client:
        assert await client.site_name() == "Espresso Corner"
        await client.check()
        await client.webhooks()
    assert woo.paths == [
        "/wp-json/",
        "/?rest_route=/",
        "/?rest_route=/wc/v3/orders",
        "/?rest_route=/wc/v3/webhooks",
    ]


async def test_wordpress_without_woocommerce_says_so(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    woo.woocommerce_active = False
    async with api(store_server, woo, woo.add_key()) as client:
        with pytest.raises(StoreProblem) as caught:
            await client.check()
    assert caught.value.problem == "unreachable"
    assert "WooCommerce plugin is active" in caught.value.message


async def test_webhooks_are_created_with_our_secret_and_pinged(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    receiver = store_server.receiver(f"woo-{woo.domain}")
    async with api(store_server, woo, woo.add_key()) as client:
        hook = await client.create_webhook("order.created", receiver.url, SECRET)
        assert hook.status == "active"
        assert [h.remote_id for h in await client.webhooks()] == [hook.remote_id]
    assert woo.webhooks[hook.remote_id].secret == SECRET
    [ping] = receiver.requests
    assert ping.body == f"webhook_id={hook.remote_id}".encode()
    assert not any(name.startswith("x-wc-") for name in ping.headers)
    assert not woo.webhooks[hook.remote_id].pending_delivery


async def test_a_failed_ping_leaves_the_webhook_active_and_pending(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    receiver = store_server.receiver(f"woo-down-{woo.domain}", status=503)
    async with api(store_server, woo, woo.add_key()) as client:
        hook = await client.create_webhook("order.created", receiver.url, SECRET)
        assert hook.status == "active"
        # Every later save of a pending webhook pings again.
        await client.update_webhook(hook.remote_id, {"name": "Astra orders"})
    assert woo.webhooks[hook.remote_id].pending_delivery
    assert [status for _, status in woo.pings] == [503, 503]


async def test_delete_needs_force_and_a_gone_webhook_is_fine(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    key = woo.add_key()
    async with api(store_server, woo, key) as client:
        hook = await client.create_webhook("order.deleted", "https://astra.example.com/h", SECRET)
    url = f"https://127.0.0.1:{store_server.port}/{woo.domain}/wp-json/wc/v3/webhooks/{hook.remote_id}"
    async with httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=store_server.ca_file)
    ) as raw:
        unforced = await raw.delete(url, auth=(key.consumer_key, key.consumer_secret))
    assert unforced.status_code == 501
    assert unforced.json()["code"] == "woocommerce_rest_trash_not_supported"
    async with api(store_server, woo, key) as client:
        await client.delete_webhook(hook.remote_id)
        await client.delete_webhook(hook.remote_id)
        assert await client.webhooks() == []


async def test_deliveries_are_signed_with_the_webhooks_secret(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    receiver = store_server.receiver(f"woo-orders-{woo.domain}")
    async with api(store_server, woo, woo.add_key()) as client:
        await client.create_webhook("order.updated", receiver.url, SECRET)
        await client.create_webhook("order.deleted", receiver.url, SECRET)
    order = next(iter(woo.orders.values()))
    await woo.fire("order.updated", order)
    await woo.fire("order.deleted", order)
    _, _, updated, deleted = receiver.requests  # after the two pings
    for delivery, topic in ((updated, "order.updated"), (deleted, "order.deleted")):
        digest = hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).digest()
        assert delivery.headers["x-wc-webhook-signature"] == base64.b64encode(digest).decode()
        assert delivery.headers["x-wc-webhook-topic"] == topic
        assert delivery.headers["x-wc-webhook-source"] == f"https://{woo.domain}/"
    assert json.loads(updated.body)["id"] == order.id
    assert json.loads(deleted.body) == {"id": order.id}


async def test_more_than_five_failed_deliveries_in_a_row_disable_the_webhook(
    store_server: StoreServer, woo: SimulatedWooCommerce
) -> None:
    receiver = store_server.receiver(f"woo-failing-{woo.domain}")
    async with api(store_server, woo, woo.add_key()) as client:
        hook = await client.create_webhook("order.updated", receiver.url, SECRET)
        receiver.status = 500
        order = next(iter(woo.orders.values()))
        for _ in range(6):
            await woo.fire("order.updated", order)
        [listed] = await client.webhooks()
        assert listed.status == "active"  # six failures: not yet
        [attempt] = await woo.fire("order.updated", order)
        assert attempt.disabled
        [listed] = await client.webhooks()
        assert listed.status == "disabled"
        assert await woo.fire("order.updated", order) == []  # a disabled webhook sends nothing
    assert listed.remote_id == hook.remote_id
