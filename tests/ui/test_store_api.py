"""The store's API in real Chromium (issue 11, the seller's side): connecting with
credentials (checked, webhooks set up, each step shown), without them (today's steps),
wrong ones fixed through Edit, a disabled or removed webhook set up again from its card,
credentials removed. The live server calls simulated Shopify and WooCommerce stores over
real HTTPS (testkit/simulators).

With ASTRA_DOCS_SCREENSHOTS=1, the README's screenshots are written to docs/screenshots/."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, expect

from testkit.simulators.server import StoreServer
from testkit.simulators.shopify import SimulatedShopify
from testkit.simulators.woocommerce import Key, SimulatedWooCommerce
from tests.ui.conftest import PUBLIC_URL, Session
from tests.ui.test_integrations_page import add_button, fill_store, store_card, store_dialog

pytestmark = pytest.mark.ui

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SECTION = "Connect the store's API"
HEALTHY = "Connected · webhooks active"
DONE = "Webhooks set up in your store ✓"
WOO_TOPICS = {"order.created", "order.updated", "order.deleted", "order.restored"}


async def docs_shot(target: Locator, name: str) -> None:
    """One of the README's pictures: just the element, so the PNG stays small."""
    if os.environ.get("ASTRA_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        await target.screenshot(path=str(DOCS / name), animations="disabled")


@pytest.fixture
def woo(store_server: StoreServer, fresh_domain: Callable[[str], str]) -> SimulatedWooCommerce:
    return store_server.add(SimulatedWooCommerce(fresh_domain("cups{}.example.com")))


@pytest.fixture
def shop(store_server: StoreServer, fresh_domain: Callable[[str], str]) -> SimulatedShopify:
    return store_server.add(SimulatedShopify(fresh_domain("linen{}.myshopify.com")))


def woo_credentials(key: Key) -> dict[str, str]:
    return {"consumer_key": key.consumer_key, "consumer_secret": key.consumer_secret}


async def open_connect(ui: Session, email: str) -> Locator:
    await ui.sign_in(email)
    await ui.open()
    await add_button(ui.page).click()
    return store_dialog(ui.page)


async def open_api_section(dialog: Locator) -> Locator:
    summary = dialog.locator("summary", has_text=SECTION)
    await summary.click()
    return dialog.locator("#cred-section")


async def fill_woo(dialog: Locator, key: Key) -> None:
    await dialog.get_by_label("Consumer key").fill(key.consumer_key)
    await dialog.get_by_label("Consumer secret").fill(key.consumer_secret)


async def connected_via_api(ui: Session, email: str, platform: str, domain: str, creds: Any) -> Any:
    """Arrange a store connected the way the dialog does it: created, checked, set up."""
    await ui.sign_in(email)
    body = {"name": "Cups & Co", "type": platform, "domain": domain, "credentials": creds}
    created = await ui.api("POST", "/api/integrations", body)
    assert (await ui.api("POST", f"/api/integrations/{created['id']}/check"))["ok"] is True
    await ui.api("POST", f"/api/integrations/{created['id']}/webhooks")
    return created


async def test_connect_woocommerce_with_credentials(
    store_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = store_ui.page
    dialog = await open_connect(store_ui, seller_email)
    section = dialog.locator("#cred-section")
    await expect(section).not_to_have_attribute("open", "")
    await fill_store(dialog, "Cups & Co", "shopify", woo.domain)
    opened = await open_api_section(dialog)

    # The section follows the platform: Shopify's app, its legacy choice, then WooCommerce.
    await expect(opened.get_by_label("Client ID")).to_be_visible()
    await expect(opened.get_by_text("Dev Dashboard: your app \u203a Settings")).to_be_visible()
    await expect(opened.get_by_label("Client secret")).to_have_attribute("type", "password")
    await opened.get_by_label("legacy custom app").check()
    await expect(opened.get_by_label("Client ID")).to_be_hidden()
    await expect(opened.get_by_label("Admin API access token")).to_be_visible()
    await expect(
        opened.get_by_text(
            "Settings \u203a Apps and sales channels \u203a Develop apps \u203a your app"
        )
    ).to_be_visible()
    await expect(opened.get_by_label("API secret key")).to_have_attribute("type", "password")
    await dialog.get_by_label("Platform").select_option("woocommerce")
    await expect(opened.get_by_label("Admin API access token")).to_be_hidden()
    for label in ("Consumer key", "Consumer secret"):
        field = opened.get_by_label(label)
        await expect(field).to_have_attribute("type", "password")
        await expect(field).to_have_attribute("autocomplete", "off")
    await expect(
        opened.get_by_text(
            "WooCommerce \u203a Settings \u203a Advanced \u203a REST API \u203a Add key"
        )
    ).to_be_visible()

    key = woo.add_key()
    await fill_woo(dialog, key)
    # Show/hide: the value is the seller's to see while typing, never after saving.
    await opened.get_by_role("button", name="Show Consumer secret").click()
    await expect(opened.get_by_label("Consumer secret")).to_have_attribute("type", "text")
    hide = opened.get_by_role("button", name="Hide Consumer secret")
    await expect(hide).to_have_attribute("aria-pressed", "true")
    await hide.click()
    await expect(opened.get_by_label("Consumer secret")).to_have_attribute("type", "password")
    await docs_shot(dialog, "connect-dialog-api.png")
    await dialog.get_by_role("button", name="Save Connection").click()

    success = store_dialog(page, "Connection Successful!")
    await expect(success.locator("#success-steps")).to_contain_text(
        "Connected to Simulated Woo Store."
    )
    await expect(success.locator("#success-steps")).to_contain_text(DONE)
    await expect(success).to_contain_text("“Cups & Co” is connected")
    [stored] = (await store_ui.api("GET", "/api/integrations"))["items"]
    assert stored["webhook_url"] == f"{PUBLIC_URL}/api/webhooks/order?id={stored['id']}"
    await expect(success.get_by_role("textbox", name="Webhook URL")).to_have_value(
        stored["webhook_url"]
    )
    secret = await success.get_by_role("textbox", name="Webhook Secret").input_value()
    assert len(secret) >= 32
    copy = success.get_by_role("button", name="Webhook Secret")
    await copy.click()
    await expect(copy).to_contain_text("Copied")
    # Astra set the webhooks up: no steps by hand, no failure.
    await expect(success.locator(".steps").filter(visible=True)).to_have_count(0)
    await expect(success.locator("#success-problem")).to_be_hidden()

    # At the store: the four order webhooks, to this store's URL, signed with its secret.
    assert {hook.topic for hook in woo.webhooks.values()} == WOO_TOPICS
    assert {hook.delivery_url for hook in woo.webhooks.values()} == {stored["webhook_url"]}
    assert {hook.secret for hook in woo.webhooks.values()} == {secret}
    assert {hook.status for hook in woo.webhooks.values()} == {"active"}

    await success.get_by_role("button", name="Done").click()
    card = store_card(page, "Cups & Co")
    await expect(card.locator(".card-status")).to_have_text(HEALTHY)
    await expect(card.locator(".card-status")).to_have_attribute("data-tone", "ok")
    await expect(card.get_by_role("button", name="Test connection for Cups & Co")).to_be_visible()
    # No secret reached the page.
    html = await page.content()
    assert key.consumer_secret not in html
    assert key.consumer_key not in html
    await docs_shot(card, "card-connected.png")


async def test_a_slow_store_shows_each_step_and_the_dialog_stays_usable(
    store_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = store_ui.page
    dialog = await open_connect(store_ui, seller_email)
    await fill_store(dialog, "Slow Cups", "woocommerce", woo.domain)
    await open_api_section(dialog)
    await fill_woo(dialog, woo.add_key())
    # Each call to the store takes a second: about six of them to check and set up.
    woo.stall_seconds = 1.0
    try:
        await dialog.get_by_role("button", name="Save Connection").click()
        success = store_dialog(page, "Connection Successful!")
        await expect(success.get_by_text("Checking the credentials…")).to_be_visible()
        # Waiting on the store, the dialog answers: copying works, Done is there.
        copy = success.get_by_role("button", name="Webhook URL")
        await copy.click()
        await expect(copy).to_contain_text("Copied")
        await expect(success.get_by_text("Setting the webhooks up in your store…")).to_be_visible()
        await store_ui.shot("setting the webhooks up", full_page=False)
        # Closed before the end: the steps finish all the same, and a toast tells.
        await page.keyboard.press("Escape")
        await expect(success).to_be_hidden()
        await expect(page.locator("#toasts")).to_contain_text(
            f"“Slow Cups”: {DONE}", timeout=20_000
        )
    finally:
        woo.stall_seconds = 0.0
    await expect(store_card(page, "Slow Cups").locator(".card-status")).to_have_text(HEALTHY)
    assert len(woo.webhooks) == 4


async def test_without_credentials_the_manual_steps_stay(
    store_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = store_ui.page
    dialog = await open_connect(store_ui, seller_email)
    await fill_store(dialog, "Plain Cups", "woocommerce", woo.domain)
    # Opened and left empty: the section is optional.
    await open_api_section(dialog)
    await dialog.get_by_role("button", name="Save Connection").click()

    success = store_dialog(page, "Connection Successful!")
    await expect(success).to_contain_text("“Plain Cups” is connected. Add this webhook")
    steps = success.locator(".steps").filter(visible=True)
    await expect(steps).to_contain_text(
        "WooCommerce \u203a Settings \u203a Advanced \u203a Webhooks"
    )
    await expect(success.locator("#success-steps")).to_be_hidden()
    await success.get_by_role("button", name="Done").click()
    card = store_card(page, "Plain Cups")
    await expect(card.locator(".card-status")).to_have_count(0)
    await expect(card.get_by_role("button", name="Test connection")).to_have_count(0)
    assert woo.webhooks == {}
    [stored] = (await store_ui.api("GET", "/api/integrations"))["items"]
    assert stored["has_credentials"] is False


async def test_wrong_credentials_are_fixed_through_edit(
    store_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = store_ui.page
    key = woo.add_key()
    dialog = await open_connect(store_ui, seller_email)
    await fill_store(dialog, "Cups & Co", "woocommerce", woo.domain)
    await open_api_section(dialog)
    await fill_woo(dialog, Key(key.consumer_key, "cs_" + "0" * 40))
    await dialog.get_by_role("button", name="Save Connection").click()

    success = store_dialog(page, "Connection Successful!")
    problem = success.locator("#success-problem")
    await expect(problem).to_contain_text("WooCommerce rejected the consumer secret.")
    await expect(problem).to_contain_text("Fix the credentials with Edit, then Test connection.")
    await expect(success.locator("#success-steps")).to_contain_text(
        "Checking the credentials failed."
    )
    await expect(success).to_contain_text("not connected to the store's API yet")
    await store_ui.shot("credentials rejected", full_page=False)
    # The webhook URL and secret are still there, for the record.
    await expect(success.get_by_role("textbox", name="Webhook Secret")).not_to_have_value("")
    assert woo.webhooks == {}
    await success.get_by_role("button", name="Done").click()

    card = store_card(page, "Cups & Co")
    await expect(card.locator(".card-status")).to_have_text("Credentials rejected Edit credentials")
    await expect(card.locator(".card-status")).to_have_attribute("data-tone", "warn")
    await card.get_by_role("button", name="Edit credentials for Cups & Co").click()
    edit = store_dialog(page, "Edit Store")
    await expect(edit.get_by_text("Credentials saved · WooCommerce REST API key")).to_be_visible()
    await expect(edit.locator("#cred-check")).to_contain_text("WooCommerce rejected the consumer")
    replace = edit.get_by_role("button", name="Replace")
    await expect(replace).to_be_focused()
    await store_ui.shot("edit with saved credentials", full_page=False)
    await replace.click()
    await expect(edit.get_by_label("Consumer key")).to_be_focused()
    await expect(edit.get_by_label("Consumer key")).to_have_value("")
    await fill_woo(edit, key)
    await edit.get_by_role("button", name="Save Changes").click()

    # Saved, checked and set up from the edit dialog, which then closes.
    await expect(edit).to_be_hidden()
    await expect(page.locator("#toasts")).to_contain_text(f"Changes saved. {DONE}")
    status = card.locator(".card-status")
    await expect(status).to_have_text(HEALTHY)
    await card.get_by_role("button", name="Test connection").click()
    await expect(page.locator("#toasts")).to_contain_text(
        "“Cups & Co”: Connected to Simulated Woo Store."
    )
    await expect(status).to_have_text(HEALTHY)
    await expect(card.get_by_role("button", name="Test connection")).to_be_focused()
    assert {hook.status for hook in woo.webhooks.values()} == {"active"}


async def test_test_connection_says_what_went_wrong(
    store_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = store_ui.page
    key = woo.add_key()
    await connected_via_api(store_ui, seller_email, "woocommerce", woo.domain, woo_credentials(key))
    # Opening, the page reads the webhooks' state at the store: that read is over before the
    # key goes (after, the store would refuse it, a 409 the browser logs as an error).
    async with page.expect_response(
        lambda response: response.request.method == "GET" and "/webhooks" in response.url
    ):
        await store_ui.open()
    card = store_card(page, "Cups & Co")
    await expect(card.locator(".card-status")).to_have_text(HEALTHY)

    woo.keys.remove(key)  # the seller revoked the key in WordPress
    await card.get_by_role("button", name="Test connection").click()
    await expect(page.locator("#toasts")).to_contain_text("WooCommerce doesn't know this")
    await expect(card.locator(".card-status")).to_have_text("Credentials rejected Edit credentials")


async def test_re_enable_a_webhook_woocommerce_disabled(
    store_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = store_ui.page
    creds = woo_credentials(woo.add_key())
    await connected_via_api(store_ui, seller_email, "woocommerce", woo.domain, creds)
    # Past five failed deliveries WooCommerce disables a webhook, telling nobody.
    hook = next(h for h in woo.webhooks.values() if h.topic == "order.updated")
    hook.status = "disabled"

    await store_ui.open()
    card = store_card(page, "Cups & Co")
    status = card.locator(".card-status")
    # The page reads the webhooks' state at the store, and the card says what it found.
    await expect(status).to_have_text("Woo disabled the webhook Re-enable")
    await expect(status).to_have_attribute("data-tone", "warn")
    await docs_shot(card, "card-webhook-disabled.png")
    await card.get_by_role("button", name="Re-enable for Cups & Co").click()
    await expect(status).to_have_text(HEALTHY)
    await expect(page.locator("#toasts")).to_contain_text(f"“Cups & Co”: {DONE}")
    assert hook.status == "active"
    assert len(woo.webhooks) == 4  # re-enabled, not made again


async def test_set_up_again_a_webhook_shopify_removed(
    store_ui: Session, seller_email: str, shop: SimulatedShopify
) -> None:
    page = store_ui.page
    app = shop.install_app(["read_orders", "read_all_orders"])
    creds = {"client_id": app.client_id, "client_secret": app.secret}
    await connected_via_api(store_ui, seller_email, "shopify", shop.domain, creds)
    # Shopify deletes a subscription after 8 failed deliveries over 4 hours.
    [removed] = [n for n, sub in shop.subscriptions.items() if sub.topic == "ORDERS_UPDATED"]
    del shop.subscriptions[removed]

    await store_ui.open()
    card = store_card(page, "Cups & Co")
    await expect(card.locator(".card-status")).to_have_text(
        "Shopify removed the webhook Set up again"
    )
    await card.get_by_role("button", name="Set up again").click()
    await expect(card.locator(".card-status")).to_have_text(HEALTHY)
    assert len(shop.subscriptions) == 3


async def test_connect_a_shopify_app_and_a_legacy_app_without_its_key(
    store_ui: Session, seller_email: str, shop: SimulatedShopify
) -> None:
    page = store_ui.page
    app = shop.install_app()
    dialog = await open_connect(store_ui, seller_email)
    await fill_store(dialog, "Linen App", "shopify", shop.domain)
    opened = await open_api_section(dialog)
    await opened.get_by_label("Client ID").fill(app.client_id or "")
    await opened.get_by_label("Client secret").fill(app.secret)
    await dialog.get_by_role("button", name="Save Connection").click()
    success = store_dialog(page, "Connection Successful!")
    # Without read_all_orders the check says so (only 60 days of orders), and goes on.
    await expect(success.locator("#success-steps")).to_contain_text("60 days")
    await expect(success.locator("#success-steps")).to_contain_text(DONE)
    assert {sub.uri for sub in shop.subscriptions.values()} == {
        (await store_ui.api("GET", "/api/integrations"))["items"][0]["webhook_url"]
    }
    await success.get_by_role("button", name="Done").click()
    await expect(store_card(page, "Linen App").locator(".card-status")).to_have_text(HEALTHY)

    # A legacy token without its API secret key: checked, but no webhooks, and why.
    store_ui.expect_http_error(409)
    legacy = shop.install_legacy_app()
    await store_ui.api("DELETE", "/api/integrations/" + (await first_id(store_ui)))
    await add_button(page).click()
    await fill_store(dialog, "Linen Legacy", "shopify", shop.domain)
    opened = await open_api_section(dialog)
    await opened.get_by_label("legacy custom app").check()
    await opened.get_by_label("Admin API access token").fill(legacy.key)
    await dialog.get_by_role("button", name="Save Connection").click()
    problem = success.locator("#success-problem")
    await expect(problem).to_contain_text("Add the app's API secret key as well")
    await expect(success.locator("#success-steps")).to_contain_text("Connected to Simulated Shop")
    await success.get_by_role("button", name="Done").click()
    card = store_card(page, "Linen Legacy")
    await expect(card.locator(".card-status")).to_have_text(
        "Connected · webhooks not set up Set up webhooks"
    )
    await card.get_by_role("button", name="Edit Linen Legacy").click()
    edit = store_dialog(page, "Edit Store")
    await expect(edit.get_by_text("Credentials saved · Shopify legacy custom app")).to_be_visible()


async def first_id(ui: Session) -> str:
    item_id: str = (await ui.api("GET", "/api/integrations"))["items"][0]["id"]
    return item_id


async def test_credentials_are_checked_as_they_are_typed(
    store_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    dialog = await open_connect(store_ui, seller_email)
    await fill_store(dialog, "Typed Cups", "woocommerce", woo.domain)
    save = dialog.get_by_role("button", name="Save Connection")
    await expect(save).to_be_enabled()
    opened = await open_api_section(dialog)
    key = opened.get_by_label("Consumer key")

    await key.fill("cs_" + "1" * 40)
    await expect(dialog.locator("#cred-consumer-key-error")).to_contain_text(
        "WooCommerce consumer keys start with ck_"
    )
    await expect(dialog.locator("#cred-consumer-secret-error")).to_have_text(
        "Enter the consumer secret too."
    )
    await expect(key).to_have_attribute("aria-invalid", "true")
    await expect(save).to_be_disabled()
    await expect(dialog.get_by_text("Finish the store's API credentials, or clear")).to_be_visible()
    await key.fill("ck_ with spaces")
    await expect(dialog.locator("#cred-consumer-key-error")).to_contain_text("no spaces")
    # Cleared again, or folded away: nothing is sent, and Save is back.
    await key.fill("")
    await expect(save).to_be_enabled()
    await key.fill("ck_short")
    await expect(save).to_be_disabled()

    # What the server still refuses lands under the input it names, or above the form; a
    # union's other members (missing, not taken) are not the point.
    store_ui.expect_http_error(422)
    refusal = {
        "detail": [
            {"loc": loc, "msg": msg, "type": kind}
            for loc, msg, kind in (
                (
                    ["body", "credentials", "ShopifyAppCredentials", "consumer_key"],
                    "No.",
                    "extra_forbidden",
                ),
                (
                    ["body", "credentials", "WooCommerceCredentials", "consumer_key"],
                    "Server says no.",
                    "credential",
                ),
            )
        ]
    }
    page = store_ui.page
    await page.route("**/api/integrations", lambda route: route.fulfill(status=422, json=refusal))
    await key.fill("ck_" + "1" * 40)
    await opened.get_by_label("Consumer secret").fill("cs_" + "1" * 40)
    await save.click()
    await expect(dialog.locator("#cred-consumer-key-error")).to_have_text("Server says no.")
    await expect(key).to_be_focused()
    await expect(save).to_be_disabled()
    await key.fill("ck_" + "2" * 40)
    await expect(save).to_be_enabled()
    whole = {"detail": [{"loc": ["body", "credentials"], "msg": "Not these.", "type": "x"}]}
    await page.unroute("**/api/integrations")
    await page.route("**/api/integrations", lambda route: route.fulfill(status=422, json=whole))
    await save.click()
    await expect(dialog.locator("#store-alert")).to_have_text("Not these.")
    await page.unroute("**/api/integrations")

    await dialog.locator("summary", has_text=SECTION).click()
    await expect(save).to_be_enabled()
    await save.click()
    success = store_dialog(store_ui.page, "Connection Successful!")
    await expect(success).to_contain_text("“Typed Cups” is connected. Add this webhook")
    await expect(success.locator("#success-steps")).to_be_hidden()
    [stored] = (await store_ui.api("GET", "/api/integrations"))["items"]
    assert stored["has_credentials"] is False


async def test_remove_credentials_from_edit(
    store_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = store_ui.page
    key = woo.add_key()
    await connected_via_api(store_ui, seller_email, "woocommerce", woo.domain, woo_credentials(key))
    await store_ui.open()
    card = store_card(page, "Cups & Co")
    await card.get_by_role("button", name="Edit Cups & Co").click()
    edit = store_dialog(page, "Edit Store")
    await expect(edit.get_by_text("Credentials saved · WooCommerce REST API key")).to_be_visible()
    await expect(edit.locator("#cred-check")).to_contain_text("Connected to Simulated Woo Store.")
    # Write-only: no input holds them, nor does the page.
    for label in ("Consumer key", "Consumer secret"):
        await expect(edit.get_by_label(label)).to_have_value("")
    assert key.consumer_secret not in await page.content()

    # Changing the platform asks what becomes of the saved ones.
    await edit.get_by_label("Platform").select_option("shopify")
    await edit.get_by_label("Store Domain").fill("cups-and-co.myshopify.com")
    await expect(edit.get_by_role("button", name="Save Changes")).to_be_disabled()
    await expect(edit.get_by_text("Replace or remove the saved credentials")).to_be_visible()
    await edit.get_by_label("Platform").select_option("woocommerce")
    await edit.get_by_label("Store Domain").fill(woo.domain)
    await expect(edit.get_by_role("button", name="Save Changes")).to_be_enabled()

    await edit.get_by_role("button", name="Remove", exact=True).click()
    confirm = edit.get_by_role("group", name="Remove the saved credentials?")
    await expect(confirm).to_contain_text("no longer check this store")
    await expect(confirm.get_by_role("button", name="Keep them")).to_be_focused()
    await store_ui.shot("remove credentials?", full_page=False)
    await confirm.get_by_role("button", name="Keep them").click()
    await expect(confirm).to_be_hidden()
    [stored] = (await store_ui.api("GET", "/api/integrations"))["items"]
    assert stored["has_credentials"] is True

    await edit.get_by_role("button", name="Remove", exact=True).click()
    await confirm.get_by_role("button", name="Remove credentials").click()
    await expect(page.locator("#toasts")).to_contain_text("Credentials removed.")
    await expect(edit.locator("summary", has_text=SECTION)).to_be_visible()
    await expect(edit.locator("summary", has_text=SECTION)).to_be_focused()
    await expect(edit.get_by_text("Credentials saved")).to_be_hidden()
    [stored] = (await store_ui.api("GET", "/api/integrations"))["items"]
    assert stored["has_credentials"] is False
    await expect(card.locator(".card-status")).to_have_count(0)
    await expect(card.get_by_role("button", name="Test connection")).to_have_count(0)
    await page.keyboard.press("Escape")
    await expect(edit).to_be_hidden()


async def test_keyboard_and_a_375px_screen(
    store_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = store_ui.page
    await page.set_viewport_size({"width": 375, "height": 812})
    key = woo.add_key()

    async def assert_fits() -> None:
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0

    await store_ui.sign_in(seller_email)
    await store_ui.open()
    await add_button(page).focus()
    await page.keyboard.press("Enter")
    dialog = store_dialog(page)
    await page.keyboard.type("Pocket Cups")
    await page.keyboard.press("Tab")
    await page.keyboard.press("ArrowDown")  # Shopify
    await page.keyboard.press("ArrowDown")  # WooCommerce
    await page.keyboard.press("Tab")
    await page.keyboard.type(woo.domain)
    # Next in the tab order: the API section, opened with Enter.
    await page.keyboard.press("Tab")
    await expect(dialog.locator("summary", has_text=SECTION)).to_be_focused()
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    await expect(dialog.get_by_label("Consumer key")).to_be_focused()
    await page.keyboard.type(key.consumer_key)
    await page.keyboard.press("Tab")
    await expect(dialog.get_by_role("button", name="Show Consumer key")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.type(key.consumer_secret)
    await assert_fits()
    await store_ui.shot("phone dialog with the API section", full_page=False)
    await page.keyboard.press("Enter")
    success = store_dialog(page, "Connection Successful!")
    await expect(success.locator("#success-steps")).to_contain_text(DONE)
    await assert_fits()
    await page.keyboard.press("Escape")
    await expect(success).to_be_hidden()
    card = store_card(page, "Pocket Cups")
    await expect(card.locator(".card-status")).to_have_text(HEALTHY)
    await assert_fits()

    await card.get_by_role("button", name="Edit Pocket Cups").click()
    edit = store_dialog(page, "Edit Store")
    await edit.get_by_role("button", name="Remove", exact=True).click()
    await expect(edit.get_by_role("button", name="Remove credentials")).to_be_visible()
    await assert_fits()
    await page.keyboard.press("Escape")
    await expect(edit).to_be_hidden()
