"""The store-API routes (ARCHITECTURE.md, "Store APIs"): check, webhook set-up and live
state, removal on delete — through the app, against simulated Shopify and WooCommerce
stores over real HTTPS on 127.0.0.1, for every kind of caller."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.simulators.server import StoreServer
from testkit.simulators.shopify import App, SimulatedShopify
from testkit.simulators.woocommerce import Key, SimulatedWooCommerce
from testkit.stores import fetch, orders_of
from tests.conftest import Account, TestDatabase, client_for, running

BASE = "/api/integrations"
PUBLIC = "https://astra.example.com"
SHOPIFY_TOPICS = ["orders/create", "orders/updated", "orders/delete"]
WOO_TOPICS = ["order.created", "order.updated", "order.deleted", "order.restored"]


@pytest.fixture(scope="module")
async def app(test_database: TestDatabase, store_server: StoreServer) -> AsyncIterator[FastAPI]:
    """The app calling the simulated stores (ASTRA_STORE_API_URL), public at an https
    address as Shopify requires; a rotated secret stops verifying at once."""
    settings = store_server.settings(
        test_database.settings, public_url=PUBLIC, secret_grace_hours=0
    )
    async with running(settings) as application:
        yield application


@pytest.fixture
async def astra(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Astra as the stores reach it: their deliveries land in the app itself."""
    async with client_for(app) as client:
        yield client


def app_credentials(app: App) -> dict[str, str]:
    return {"client_id": app.client_id or "", "client_secret": app.secret}


def woo_credentials(key: Key) -> dict[str, str]:
    return {"consumer_key": key.consumer_key, "consumer_secret": key.consumer_secret}


async def connect(
    account: Account, platform: str, domain: str, credentials: dict[str, str] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"{domain} store", "type": platform, "domain": domain}
    if credentials is not None:
        body["credentials"] = credentials
    response = await account.client.post(BASE, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["has_credentials"] is (credentials is not None)
    return created


async def check(account: Account, integration_id: str) -> dict[str, Any]:
    response = await account.client.post(f"{BASE}/{integration_id}/check")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def shop(store_server: StoreServer, fresh_domain: Callable[[str], str]) -> SimulatedShopify:
    return store_server.add(SimulatedShopify(fresh_domain("linen{}.myshopify.com")))


@pytest.fixture
def woo(store_server: StoreServer, fresh_domain: Callable[[str], str]) -> SimulatedWooCommerce:
    return store_server.add(SimulatedWooCommerce(fresh_domain("cups{}.example.com")))


# --- Shopify ---------------------------------------------------------------------------


async def test_a_shopify_app_checks_sets_up_its_webhooks_and_its_deliveries_land(
    seller: Account, shop: SimulatedShopify, astra: httpx.AsyncClient, owner_engine: AsyncEngine
) -> None:
    shop.delivery_client = astra
    created = await connect(seller, "shopify", shop.domain, app_credentials(shop.install_app()))

    result = await check(seller, created["id"])
    assert result["ok"] is True, result
    assert (result["problem"], result["shop_name"]) == (None, "Simulated Shop")
    assert "60 days" in result["message"]  # read_orders without read_all_orders

    first = await seller.client.post(f"{BASE}/{created['id']}/webhooks")
    again = await seller.client.post(f"{BASE}/{created['id']}/webhooks")
    assert first.status_code == again.status_code == 200, first.text
    hooks = first.json()["webhooks"]
    assert sorted(h["topic"] for h in hooks) == sorted(SHOPIFY_TOPICS)
    assert {h["status"] for h in hooks} == {"active"}
    assert again.json() == first.json()  # nothing new was created
    assert len(shop.subscriptions) == 3
    assert {sub.uri for sub in shop.subscriptions.values()} == {created["webhook_url"]}

    # Shopify signs an API-created webhook with the app's client secret: it verifies as is.
    order = next(iter(shop.orders.values()))
    [attempt] = await shop.fire("orders/create", order)
    assert attempt.status == 200
    [row] = await orders_of(owner_engine, _store(created))
    assert row["platform_order_id"] == str(order.id)

    read = (await seller.client.get(f"{BASE}/{created['id']}")).json()
    assert read["connection"]["proven"] is True
    assert read["connection"]["webhooks"] == "active"
    assert read["connection"]["shop_name"] == "Simulated Shop"


async def test_a_subscription_shopify_removed_after_failures_reads_as_missing(
    seller: Account, shop: SimulatedShopify, store_server: StoreServer
) -> None:
    # Deliveries go to Astra's public address, which nothing answers here: they all fail.
    shop.delivery_client = store_server.delivery_client
    created = await connect(seller, "shopify", shop.domain, app_credentials(shop.install_app()))
    assert (await seller.client.post(f"{BASE}/{created['id']}/webhooks")).status_code == 200
    await shop.fire("orders/create", next(iter(shop.orders.values())))
    await shop.exhaust_retries()

    live = await seller.client.get(f"{BASE}/{created['id']}/webhooks")

    assert live.status_code == 200
    statuses = {h["topic"]: h["status"] for h in live.json()["webhooks"]}
    assert statuses["orders/create"] == "missing"
    card = (await seller.client.get(f"{BASE}/{created['id']}")).json()
    assert card["connection"]["webhooks"] == "missing"
    # Setting up again brings it back.
    again = await seller.client.post(f"{BASE}/{created['id']}/webhooks")
    assert {h["status"] for h in again.json()["webhooks"]} == {"active"}


async def test_a_legacy_token_checks_but_sets_up_nothing_without_its_secret_key(
    seller: Account, shop: SimulatedShopify
) -> None:
    legacy = shop.install_legacy_app(["read_orders", "read_all_orders"])
    created = await connect(seller, "shopify", shop.domain, {"access_token": legacy.key})

    assert (await check(seller, created["id"]))["ok"] is True
    response = await seller.client.post(f"{BASE}/{created['id']}/webhooks")

    assert response.status_code == 409
    assert response.json()["problem"] == "no_credentials"
    assert "API secret key" in response.json()["detail"]
    assert shop.subscriptions == {}


# --- WooCommerce -----------------------------------------------------------------------


async def test_woo_disables_a_failing_webhook_and_setting_up_again_re_enables_it(
    seller: Account,
    woo: SimulatedWooCommerce,
    astra: httpx.AsyncClient,
    owner_engine: AsyncEngine,
) -> None:
    woo.delivery_client = astra
    created = await connect(seller, "woocommerce", woo.domain, woo_credentials(woo.add_key()))
    assert (await check(seller, created["id"]))["ok"] is True
    hooks = (await seller.client.post(f"{BASE}/{created['id']}/webhooks")).json()["webhooks"]
    assert sorted(h["topic"] for h in hooks) == sorted(WOO_TOPICS)
    assert [status for _, status in woo.pings] == [200] * 4  # Woo pinged each on save

    # The seller rotates the secret: Woo still signs with the old one, so every delivery
    # is refused (401) and, past five failures, Woo disables the webhook, telling nobody.
    await seller.client.post(f"{BASE}/{created['id']}/secret")
    order = next(iter(woo.orders.values()))
    for _ in range(7):
        await woo.fire("order.updated", order)
    live = (await seller.client.get(f"{BASE}/{created['id']}/webhooks")).json()["webhooks"]
    assert {h["topic"]: h["status"] for h in live}["order.updated"] == "disabled"
    card = (await seller.client.get(f"{BASE}/{created['id']}")).json()
    assert card["connection"]["webhooks"] == "disabled"

    again = (await seller.client.post(f"{BASE}/{created['id']}/webhooks")).json()["webhooks"]

    assert {h["status"] for h in again} == {"active"}
    [attempt] = await woo.fire("order.updated", order)
    assert attempt.status == 200  # signed with the current secret again
    assert len(await orders_of(owner_engine, _store(created))) == 1


# --- problems: each a clear sentence, never a 5xx -------------------------------------


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        ("wrong secret", "invalid_credentials"),
        ("another store answers", "wrong_store"),
        ("no read_orders", "missing_scope"),
        ("frozen", "store_unavailable"),
        ("locked", "store_unavailable"),
    ],
)
async def test_shopify_problems(
    seller: Account, shop: SimulatedShopify, breakage: str, problem: str
) -> None:
    app = shop.install_app(["read_products"] if breakage == "no read_orders" else ["read_orders"])
    credentials = app_credentials(app)
    if breakage == "wrong secret":
        credentials["client_secret"] = "shpss_" + "0" * 32
    if breakage == "another store answers":
        shop.myshopify_domain = "someone-else.myshopify.com"
    if breakage in ("frozen", "locked"):
        shop.state = breakage  # type: ignore[assignment]
    created = await connect(seller, "shopify", shop.domain, credentials)

    result = await check(seller, created["id"])

    assert (result["ok"], result["problem"]) == (False, problem), result
    assert len(result["message"]) > 20
    assert credentials["client_secret"] not in result["message"]
    card = (await seller.client.get(f"{BASE}/{created['id']}")).json()["connection"]
    assert (card["problem"], card["proven"]) == (problem, False)


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [("wrong secret", "invalid_credentials"), ("unknown key", "invalid_credentials")],
)
async def test_woocommerce_problems(
    seller: Account, woo: SimulatedWooCommerce, breakage: str, problem: str
) -> None:
    credentials = woo_credentials(woo.add_key())
    if breakage == "wrong secret":
        credentials["consumer_secret"] = "cs_" + "0" * 40
    else:
        credentials["consumer_key"] = "ck_" + "0" * 40
    created = await connect(seller, "woocommerce", woo.domain, credentials)

    result = await check(seller, created["id"])

    assert (result["ok"], result["problem"]) == (False, problem), result


async def test_a_stalled_store_is_a_timeout(
    seller: Account,
    woo: SimulatedWooCommerce,
    test_database: TestDatabase,
    store_server: StoreServer,
) -> None:
    woo.stall_seconds = 1.5
    settings = store_server.settings(test_database.settings, store_api_timeout_seconds=0.5)
    async with running(settings) as application, client_for(application) as client:
        await _sign_in_like(seller, client)
        created = await connect(
            Account(seller.id, seller.email, seller.role, client),
            "woocommerce",
            woo.domain,
            woo_credentials(woo.add_key()),
        )
        response = await client.post(f"{BASE}/{created['id']}/check")
    assert response.status_code == 200
    assert response.json()["problem"] == "timeout"


async def test_a_store_that_is_down_is_unreachable(
    seller: Account, test_database: TestDatabase, store_server: StoreServer
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings = store_server.settings(
        test_database.settings, store_api_url=f"https://127.0.0.1:{closed}/{{domain}}"
    )
    async with running(settings) as application, client_for(application) as client:
        await _sign_in_like(seller, client)
        account = Account(seller.id, seller.email, seller.role, client)
        created = await connect(
            account,
            "woocommerce",
            "down.example.com",
            woo_credentials(Key("ck_" + "1" * 40, "cs_" + "1" * 40, "read_write", True)),
        )
        response = await client.post(f"{BASE}/{created['id']}/check")
    assert response.status_code == 200
    assert response.json()["problem"] == "unreachable"


async def test_a_domain_resolving_to_loopback_is_refused_without_calling_it(
    seller: Account, app: FastAPI, test_database: TestDatabase
) -> None:
    """With the default ASTRA_STORE_API_URL (https://{domain}), a store whose name resolves
    to this machine is never called: a seller must not reach Astra's own network."""
    settings = test_database.settings.model_copy(update={"store_api_url": "https://{domain}"})
    asked: list[str] = []

    async def loopback(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    async with running(settings) as application, client_for(application) as client:
        application.state.store_resolver = loopback
        await _sign_in_like(seller, client)
        account = Account(seller.id, seller.email, seller.role, client)
        created = await connect(
            account,
            "woocommerce",
            "evil-rebind.example.com",
            woo_credentials(Key("ck_" + "2" * 40, "cs_" + "2" * 40, "read_write", True)),
        )
        response = await client.post(f"{BASE}/{created['id']}/check")
    assert response.status_code == 200
    assert response.json()["problem"] == "refused_address"
    assert asked == ["evil-rebind.example.com"]


async def test_without_credentials_the_check_says_what_to_add(seller: Account) -> None:
    created = await connect(seller, "woocommerce", "plain.example.com", None)

    result = await check(seller, created["id"])
    webhooks = await seller.client.post(f"{BASE}/{created['id']}/webhooks")

    assert (result["ok"], result["problem"]) == (False, "no_credentials")
    assert "credentials" in result["message"]
    assert webhooks.status_code == 409
    assert webhooks.json()["problem"] == "no_credentials"


# --- who may call ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "check"), ("post", "webhooks"), ("get", "webhooks")],
)
async def test_every_store_route_for_every_caller(
    method: str,
    path: str,
    anonymous: httpx.AsyncClient,
    seller: Account,
    other_seller: Account,
    admin: Account,
    woo: SimulatedWooCommerce,
) -> None:
    created = await connect(seller, "woocommerce", woo.domain, woo_credentials(woo.add_key()))
    url = f"{BASE}/{created['id']}/{path}"

    assert (await anonymous.request(method, url)).status_code == 401
    refused = await other_seller.client.request(method, url)
    assert (refused.status_code, refused.json()) == (
        403,
        {"detail": "This integration belongs to another account."},
    )
    missing = await seller.client.request(method, f"{BASE}/{uuid.uuid4()}/{path}")
    assert missing.status_code == 404
    assert (await seller.client.request(method, url)).status_code == 200
    assert (await admin.client.request(method, url)).status_code == 200
    # Only setting up creates anything at the store.
    assert bool(woo.webhooks) is (method == "post" and path == "webhooks")


# --- delete, claims, secrets at rest ---------------------------------------------------


async def test_delete_removes_the_webhooks_at_the_store(
    seller: Account, woo: SimulatedWooCommerce
) -> None:
    created = await connect(seller, "woocommerce", woo.domain, woo_credentials(woo.add_key()))
    await seller.client.post(f"{BASE}/{created['id']}/webhooks")
    assert len(woo.webhooks) == 4

    assert (await seller.client.delete(f"{BASE}/{created['id']}")).status_code == 204

    assert woo.webhooks == {}


async def test_an_unreachable_store_never_blocks_the_delete(
    seller: Account,
    woo: SimulatedWooCommerce,
    test_database: TestDatabase,
    store_server: StoreServer,
) -> None:
    settings = store_server.settings(
        test_database.settings, public_url=PUBLIC, store_api_timeout_seconds=0.5
    )
    async with running(settings) as application, client_for(application) as client:
        await _sign_in_like(seller, client)
        account = Account(seller.id, seller.email, seller.role, client)
        created = await connect(account, "woocommerce", woo.domain, woo_credentials(woo.add_key()))
        await client.post(f"{BASE}/{created['id']}/webhooks")
        woo.stall_seconds = 1.5  # past the timeout: the store is as good as gone
        try:
            response = await client.delete(f"{BASE}/{created['id']}")
        finally:
            woo.stall_seconds = 0.0
        assert response.status_code == 204
        assert (await client.get(f"{BASE}/{created['id']}")).status_code == 404
    assert len(woo.webhooks) == 4  # left behind at the store, as it could not be reached


async def test_a_proven_store_supersedes_another_sellers_unproven_claim(
    seller: Account, other_seller: Account, woo: SimulatedWooCommerce
) -> None:
    """Attack review, finding 5: the real owner is never blocked by a claim, and the claim
    that lost says so."""
    squatter = await connect(other_seller, "woocommerce", woo.domain, None)
    owner = await connect(seller, "woocommerce", woo.domain, woo_credentials(woo.add_key()))

    assert (await check(seller, owner["id"]))["ok"] is True

    mine = (await seller.client.get(f"{BASE}/{owner['id']}")).json()["connection"]
    theirs = (await other_seller.client.get(f"{BASE}/{squatter['id']}")).json()["connection"]
    assert (mine["proven"], mine["superseded"]) == (True, False)
    assert (theirs["proven"], theirs["superseded"]) == (False, True)


async def test_a_dump_of_the_tables_holds_no_secret_in_clear(
    seller: Account, shop: SimulatedShopify, woo: SimulatedWooCommerce, owner_engine: AsyncEngine
) -> None:
    app = shop.install_app(["read_orders", "read_all_orders"])
    key = woo.add_key()
    shopify = await connect(seller, "shopify", shop.domain, app_credentials(app))
    woocommerce = await connect(seller, "woocommerce", woo.domain, woo_credentials(key))
    for created in (shopify, woocommerce):
        assert (await check(seller, created["id"]))["ok"] is True
        await seller.client.post(f"{BASE}/{created['id']}/webhooks")
    rotated = (await seller.client.post(f"{BASE}/{woocommerce['id']}/secret")).json()
    tokens = list(shop.tokens)  # the access tokens the store issued
    assert tokens  # the client credentials grant ran, and its token was cached

    dump = str(await fetch(owner_engine, "SELECT * FROM integrations"))
    dump += str(await fetch(owner_engine, "SELECT * FROM store_webhooks"))

    assert woo.domain in dump
    secrets = [
        app.secret,
        key.consumer_key,
        key.consumer_secret,
        shopify["webhook_secret"],
        woocommerce["webhook_secret"],
        rotated["webhook_secret"],
        *tokens,
    ]
    for secret in secrets:
        assert secret not in dump


def _store(created: dict[str, Any]) -> Any:
    from testkit.stores import Store

    return Store(uuid.UUID(created["id"]), created["type"], created["domain"], "")


async def _sign_in_like(account: Account, client: httpx.AsyncClient) -> None:
    from tests.conftest import PASSWORD

    response = await client.post(
        "/api/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
