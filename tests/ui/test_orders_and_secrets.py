"""Orders on the cards, the deliveries list, rotating the secret and Shopify's signing key,
in real Chromium. Deliveries are real: signed as Shopify and WooCommerce sign them and
posted to the live server's webhook endpoint."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, Route, expect

from astra.web.templating import ago
from testkit.stores import Store, send_order
from tests.ui.conftest import Session
from tests.ui.test_integrations_page import add_button, fill_store, store_card, store_dialog

pytestmark = pytest.mark.ui


def as_store(created: dict[str, Any], secret: str | None = None) -> Store:
    """The store as its webhooks see it: where they go, and the secret that signs them."""
    return Store(
        uuid.UUID(created["id"]),
        created["type"],
        created["domain"],
        secret or created["webhook_secret"],
    )


async def deliver(ui: Session, store: Store, order_id: int) -> httpx.Response:
    """An order-created webhook from the store, signed with `store.secret`."""
    async with httpx.AsyncClient(base_url=ui.base_url) as client:
        return await send_order(client, store, order_id)


async def accepted(ui: Session, store: Store, order_id: int) -> str:
    response = await deliver(ui, store, order_id)
    assert response.status_code == 200, response.text
    outcome: str = response.json()["outcome"]
    return outcome


async def connect_linen_and_co(ui: Session, email: str) -> Locator:
    """Sign in, connect a Shopify store through the page; the dialog's success state."""
    await ui.sign_in(email)
    await ui.open()
    await add_button(ui.page).click()
    dialog = store_dialog(ui.page)
    await fill_store(dialog, "Linen & Co", "shopify", "linen-and-co.myshopify.com")
    await dialog.get_by_role("button", name="Save Connection").click()
    return store_dialog(ui.page, "Connection Successful!")


async def open_edit(page: Page, name: str) -> Locator:
    await store_card(page, name).get_by_role("button", name="Edit").click()
    edit = store_dialog(page, "Edit Store")
    await expect(edit).to_be_visible()
    return edit


async def test_orders_show_on_the_card_and_in_the_deliveries(
    ui: Session, seller_email: str
) -> None:
    page = ui.page
    success = await connect_linen_and_co(ui, seller_email)
    secret = await success.get_by_role("textbox", name="Webhook Secret").input_value()
    await success.get_by_role("button", name="Done").click()
    card = store_card(page, "Linen & Co")
    await expect(card).to_contain_text("Waiting for first order")

    edit = await open_edit(page, "Linen & Co")
    await expect(edit.locator("#store-orders")).to_have_text("Waiting for first order")
    view = edit.get_by_role("button", name="View deliveries")
    await view.click()
    deliveries = store_dialog(page, "Recent Deliveries")
    await expect(deliveries).to_contain_text("The last 20 webhooks Astra received from Linen & Co")
    await expect(deliveries.get_by_text("No deliveries yet.")).to_be_visible()
    await expect(deliveries.get_by_role("table")).to_be_hidden()
    await ui.shot("no deliveries yet", full_page=False)
    await deliveries.get_by_role("button", name="Back").click()
    await expect(view).to_be_focused()
    await page.keyboard.press("Escape")

    [created] = (await ui.api("GET", "/api/integrations"))["items"]
    store = as_store(created, secret)
    assert await accepted(ui, store, 5523094421734) == "stored"

    await page.reload()
    await expect(card.locator(".card-orders")).to_have_text("1 order · last seconds ago")
    last = card.locator("time")
    stored_at = datetime.fromisoformat(await last.get_attribute("datetime") or "")
    assert abs(datetime.now(UTC) - stored_at) < timedelta(minutes=1)
    # The exact moment, in the reader's time zone, for hovering.
    await expect(last).to_have_attribute("title", re.compile(rf"{stored_at.year}, \d+:\d\d"))
    await ui.shot("card with an order")

    # Held back until the loading state has been seen.
    release = asyncio.Event()

    async def slow(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route("**/deliveries?limit=20", slow)
    edit = await open_edit(page, "Linen & Co")
    await expect(edit.locator("#store-orders")).to_have_text("1 order · last seconds ago")
    await edit.get_by_role("button", name="View deliveries").click()
    await expect(deliveries.get_by_text("Loading deliveries…")).to_be_visible()
    await expect(deliveries.get_by_role("heading", name="Recent Deliveries")).to_be_focused()
    await ui.shot("deliveries loading", full_page=False)
    release.set()
    rows = deliveries.locator("tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td")).to_have_text(["seconds ago", "orders/create", "Stored"])
    await expect(deliveries.get_by_text("Loading deliveries…")).to_be_hidden()
    await expect(deliveries.get_by_text("No deliveries yet.")).to_be_hidden()
    await expect(deliveries.get_by_text("received while the store was paused")).to_be_hidden()
    await ui.shot("one delivery", full_page=False)

    # Without a reload: opening the store again refreshes its card.
    await page.keyboard.press("Escape")
    await expect(deliveries).to_be_hidden()
    await expect(card.get_by_role("button", name="Edit")).to_be_focused()
    assert await accepted(ui, store, 5523094421735) == "stored"
    await open_edit(page, "Linen & Co")
    await expect(card.locator(".card-orders")).to_have_text("2 orders · last seconds ago")


async def test_rotating_the_secret(ui: Session, seller_email: str) -> None:
    page = ui.page
    await ui.sign_in(seller_email)
    created = await ui.create_store("Cups & Co", "woocommerce", "cups.example.com")
    old_secret = created["webhook_secret"]
    await ui.open()
    edit = await open_edit(page, "Cups & Co")
    await expect(edit.get_by_role("button", name="Use Shopify's signing key")).to_be_hidden()
    rotate = edit.get_by_role("button", name="Rotate secret")
    await ui.shot("edit with tools", full_page=False)

    await rotate.click()
    confirm = store_dialog(page, "Rotate Webhook Secret?")
    await expect(confirm).to_contain_text("The current one keeps working for 24 hours")
    await expect(confirm).to_contain_text("paste the new secret into the Secret")
    await ui.shot("rotate confirmation", full_page=False)
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(rotate).to_be_focused()
    assert (await accepted(ui, as_store(created), 727)) == "stored"

    await rotate.click()
    await confirm.get_by_role("button", name="Rotate secret").click()
    rotated = store_dialog(page, "New Webhook Secret")
    field = rotated.get_by_role("textbox", name="New Webhook Secret")
    await expect(field).not_to_have_value("")
    new_secret = await field.input_value()
    assert new_secret != old_secret
    await expect(rotated).to_contain_text("The previous secret keeps working until")
    await expect(field).to_have_accessible_description(re.compile("^Shown only this once"))
    copy = rotated.get_by_role("button", name="New Webhook Secret")
    await copy.click()
    await expect(copy).to_contain_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == new_secret
    await ui.shot("new secret copied", full_page=False)

    # The new secret signs deliveries; the old one still does during the grace period.
    assert await accepted(ui, as_store(created, new_secret), 728) == "stored"
    assert await accepted(ui, as_store(created, old_secret), 729) == "stored"
    forged = await deliver(ui, as_store(created, secrets.token_hex(16)), 730)
    assert forged.status_code == 401

    await rotated.get_by_role("button", name="Done").click()
    await expect(store_dialog(page, "Edit Store")).to_be_visible()
    await expect(rotate).to_be_focused()


async def test_using_shopifys_signing_key(ui: Session, seller_email: str) -> None:
    page = ui.page
    success = await connect_linen_and_co(ui, seller_email)
    steps = success.locator('.steps[data-platform="shopify"]')
    await expect(steps).to_contain_text(
        "choose Edit on this store's card and Use Shopify's signing key"
    )
    await success.get_by_role("button", name="Done").click()

    edit = await open_edit(page, "Linen & Co")
    await expect(edit.get_by_role("button", name="Rotate secret")).to_be_hidden()
    use_key = edit.get_by_role("button", name="Use Shopify's signing key")
    await ui.shot("edit with the signing key tool", full_page=False)
    await use_key.click()
    panel = store_dialog(page, "Use Shopify's Signing Key")
    key = panel.get_by_label("Signing key")
    await expect(key).to_be_focused()
    await expect(panel).to_contain_text("Settings \u203a Notifications \u203a Webhooks")
    submit = panel.get_by_role("button", name="Use this key")

    for typed, message in (
        ("", "Paste the key from your Shopify admin."),
        ("  a1b2c3  ", "That's too short: copy the whole key."),
        ("a1b2c3 d4e5f6 a1b2c3", "A signing key has no spaces or accented letters."),
        ("clé-" + "a" * 20, "A signing key has no spaces or accented letters."),
        ("a" * 201, "That's too long: copy just the key."),
    ):
        await key.fill(typed)
        await submit.click()
        await expect(panel.locator("#secret-key-error")).to_have_text(message)
        await expect(key).to_have_attribute("aria-invalid", "true")
        await expect(key).to_be_focused()
    await ui.shot("signing key refused", full_page=False)

    # What the API refuses lands under the field too, in its words.
    ui.expect_http_error(422)
    refusal = {"detail": [{"loc": ["body", "webhook_secret"], "msg": "Not this one.", "type": "x"}]}
    await page.route("**/secret", lambda route: route.fulfill(status=422, json=refusal))
    await key.fill("f" * 64)
    await expect(key).not_to_have_attribute("aria-invalid", "true")
    await submit.click()
    await expect(panel.locator("#secret-key-error")).to_have_text("Not this one.")
    await expect(key).to_have_value("f" * 64)
    await page.unroute("**/secret")

    shopify_key = secrets.token_hex(32)
    await key.fill(f"  {shopify_key}\n")
    await submit.click()
    saved = store_dialog(page, "Signing Key Saved")
    await expect(saved).to_contain_text(
        "Astra now checks this store's deliveries with Shopify's key"
    )
    await expect(saved).to_contain_text("The secret it replaced keeps working until")
    await ui.shot("signing key saved", full_page=False)

    [created] = (await ui.api("GET", "/api/integrations"))["items"]
    assert await accepted(ui, as_store(created, shopify_key), 5523094421734) == "stored"
    await saved.get_by_role("button", name="Done").click()
    await expect(use_key).to_be_focused()


async def test_a_paused_store_keeps_its_orders_as_held(ui: Session, seller_email: str) -> None:
    page = ui.page
    await ui.sign_in(seller_email)
    created = await ui.create_store("Linen & Co", "shopify", "linen-and-co.myshopify.com")
    await ui.create_store("Cups & Co", "woocommerce", "cups.example.com")
    await ui.open()
    edit = await open_edit(page, "Linen & Co")
    await edit.get_by_role("switch", name="Active").uncheck()
    await edit.get_by_role("button", name="Save Changes").click()
    card = store_card(page, "Linen & Co")
    await expect(card.get_by_text("Inactive", exact=True)).to_be_visible()
    await expect(card.locator(".card-orders")).to_have_text(
        "Paused — orders are keptWaiting for first order"
    )

    assert await accepted(ui, as_store(created), 5523094421734) == "held"
    await page.reload()
    await expect(card.get_by_text("Inactive", exact=True)).to_be_visible()
    await expect(card.get_by_text("Paused — orders are kept")).to_be_visible()
    await expect(card.get_by_text("1 order · last seconds ago")).to_be_visible()
    await expect(store_card(page, "Cups & Co").get_by_text("Paused")).to_have_count(0)
    await ui.shot("paused card")

    edit = await open_edit(page, "Linen & Co")
    await edit.get_by_role("button", name="View deliveries").click()
    deliveries = store_dialog(page, "Recent Deliveries")
    row = deliveries.locator("tbody tr")
    await expect(row.locator("td")).to_have_text(["seconds ago", "orders/create", "Held"])
    await expect(deliveries.get_by_text("received while the store was paused")).to_be_visible()
    await expect(deliveries).to_contain_text("Astra saved the order all the same")
    await ui.shot("held delivery", full_page=False)
    await page.emulate_media(color_scheme="dark")
    await ui.shot("held delivery, dark", full_page=False)
    await page.emulate_media(color_scheme="light")

    await page.set_viewport_size({"width": 375, "height": 812})
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    box = await deliveries.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 375
    await ui.shot("held delivery on a phone", full_page=False)


OFFSETS = [-90, 0, 59, 60, 61, 3599, 3600, 7199, 86399, 86400, 86400 * 45]


async def test_the_browser_says_ago_as_the_server_does(ui: Session) -> None:
    await ui.open("/login")
    now = datetime(2026, 5, 2, 14, 15, 31, tzinfo=UTC)
    said = await ui.page.evaluate(
        """async ([now, offsets]) => {
            const { ago } = await import("/static/js/ui.js");
            return offsets.map((seconds) => ago(new Date(now - seconds * 1000), now));
        }""",
        [now.timestamp() * 1000, OFFSETS],
    )
    assert said == [ago(now - timedelta(seconds=seconds), now) for seconds in OFFSETS]
