"""/settings/integrations in real Chromium: every behaviour the issue lists, as a seller,
another seller and an admin would meet it. Screenshots of each step go to test-artifacts/."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Locator, Page, expect

from tests.ui.conftest import Session

pytestmark = pytest.mark.ui

XSS_NAME = "<img src=x onerror=alert(1)>"


def add_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Add New Integration").first


def store_card(page: Page, name: str) -> Locator:
    """The card whose heading is exactly `name`."""
    return page.get_by_role("article").filter(
        has=page.get_by_role("heading", name=name, exact=True)
    )


def store_dialog(page: Page, title: str = "Connect a New Store") -> Locator:
    return page.get_by_role("dialog", name=title)


async def open_add_dialog(ui: Session, email: str) -> Locator:
    """Sign in as `email`, open the page and its "Connect a New Store" dialog."""
    await ui.sign_in(email)
    await ui.open()
    await add_button(ui.page).click()
    return store_dialog(ui.page)


async def fill_store(dialog: Locator, name: str, platform: str, domain: str) -> None:
    await dialog.get_by_label("Store Name").fill(name)
    await dialog.get_by_label("Platform").select_option(platform)
    await dialog.get_by_label("Store Domain").fill(domain)


async def other_seller_owns_harbor_and_vine(ui: Session, other_email: str, *, then: str) -> None:
    """Another seller connects shop.harborvine.com; then `then` signs in instead."""
    await ui.sign_in(other_email)
    await ui.create_store("Harbor & Vine", "woocommerce", "shop.harborvine.com")
    await ui.context.clear_cookies()
    await ui.sign_in(then)


async def test_create_copy_edit_and_delete_a_store(ui: Session, seller_email: str) -> None:
    page = ui.page
    await ui.sign_in(seller_email)
    await ui.open()
    await expect(page.get_by_role("heading", name="Connect your first store")).to_be_visible()
    await expect(page.get_by_text(seller_email)).to_be_visible()
    await ui.shot("empty state")
    # Survives only if nothing below reloads the page.
    await page.evaluate("window.sameDocument = true")

    # The empty state's own call to action; once the card exists, focus goes to the top one.
    await page.locator("#empty").get_by_role("button", name="Add New Integration").click()
    dialog = store_dialog(page)
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Store Name")).to_be_focused()
    await expect(dialog.get_by_label("Store Domain")).to_have_attribute(
        "placeholder", "my-shop.myshopify.com"
    )
    save = dialog.get_by_role("button", name="Save Connection")
    await expect(save).to_be_disabled()
    await ui.shot("add dialog", full_page=False)

    await fill_store(
        dialog, "Northwind Outfitters", "shopify", "https://Northwind.myshopify.com/admin"
    )
    await expect(dialog.get_by_text("Will be saved as northwind.myshopify.com.")).to_be_visible()
    await expect(save).to_be_enabled()
    await ui.shot("form filled", full_page=False)
    await save.click()

    success = store_dialog(page, "Connection Successful!")
    await expect(success).to_be_visible()
    [stored] = (await ui.api("GET", "/api/integrations"))["items"]
    webhook_url = stored["webhook_url"]
    assert webhook_url == f"{ui.base_url}/api/webhooks/order?id={stored['id']}"
    await expect(success.get_by_role("textbox", name="Webhook URL")).to_have_value(webhook_url)
    secret = await success.get_by_role("textbox", name="Webhook Secret").input_value()
    assert len(secret) >= 32
    # The dialog holds other panels too (the edit tools): only what shows counts.
    steps = success.locator(".steps").filter(visible=True)
    await expect(steps).to_contain_text("Settings \u203a Notifications \u203a Webhooks")
    await expect(steps).to_contain_text("Use Shopify's signing key")
    await expect(steps).not_to_contain_text("WooCommerce \u203a Settings")

    for label, value in (("Webhook URL", webhook_url), ("Webhook Secret", secret)):
        # Matched by the part of its name that stays while it says "Copied".
        copy = success.get_by_role("button", name=label)
        await expect(copy).to_have_accessible_name(f"Copy {label}")
        await copy.click()
        await expect(copy).to_contain_text("Copied")
        assert await page.evaluate("navigator.clipboard.readText()") == value
    await ui.shot("success state, copied", full_page=False)

    await success.get_by_role("button", name="Done").click()
    await expect(success).to_be_hidden()
    await expect(add_button(page)).to_be_focused()
    card = store_card(page, "Northwind Outfitters")
    await expect(card).to_be_visible()
    await expect(card).to_contain_text("northwind.myshopify.com")
    await expect(card.locator(".platform")).to_have_text("Shopify")
    await expect(card.get_by_text("Active", exact=True)).to_be_visible()
    assert await page.evaluate("window.sameDocument") is True
    await ui.shot("card in grid")

    await card.get_by_role("button", name="Edit").click()
    edit = store_dialog(page, "Edit Store")
    await expect(edit.get_by_label("Store Name")).to_have_value("Northwind Outfitters")
    await expect(edit.get_by_label("Platform")).to_have_value("shopify")
    await expect(edit.get_by_label("Store Domain")).to_have_value("northwind.myshopify.com")
    await expect(edit.get_by_role("textbox", name="Webhook URL")).to_have_value(webhook_url)
    active = edit.get_by_role("switch", name="Active")
    await expect(active).to_be_checked()
    await edit.get_by_label("Store Name").fill("Northwind Outfitters EU")
    await active.uncheck()
    await ui.shot("edit dialog", full_page=False)
    await edit.get_by_role("button", name="Save Changes").click()
    await expect(edit).to_be_hidden()
    card = store_card(page, "Northwind Outfitters EU")
    await expect(card.get_by_text("Inactive", exact=True)).to_be_visible()
    await expect(card.get_by_text("Paused — orders are kept")).to_be_visible()
    # The server drew the card afresh; focus is back on its Edit button all the same.
    await expect(card.get_by_role("button", name="Edit")).to_be_focused()
    [stored] = (await ui.api("GET", "/api/integrations"))["items"]
    assert (stored["name"], stored["is_active"]) == ("Northwind Outfitters EU", False)
    await ui.shot("card edited")

    await card.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete “Northwind Outfitters EU”?")
    await expect(confirm).to_contain_text("stops receiving orders from northwind.myshopify.com")
    await expect(confirm).to_contain_text("webhook URL stops working")
    await expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    await ui.shot("delete confirmation", full_page=False)
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(confirm).to_be_hidden()
    await expect(card).to_be_visible()

    await card.get_by_role("button", name="Delete").click()
    await confirm.get_by_role("button", name="Delete", exact=True).click()
    await expect(card).to_have_count(0)
    await expect(page.get_by_role("heading", name="Connect your first store")).to_be_visible()
    await expect(add_button(page)).to_be_focused()
    assert (await ui.api("GET", "/api/integrations"))["items"] == []
    assert await page.evaluate("window.sameDocument") is True
    await ui.shot("deleted")


async def test_save_stays_disabled_until_every_field_is_valid(
    ui: Session, seller_email: str
) -> None:
    dialog = await open_add_dialog(ui, seller_email)
    name = dialog.get_by_label("Store Name")
    platform = dialog.get_by_label("Platform")
    domain = dialog.get_by_label("Store Domain")
    save = dialog.get_by_role("button", name="Save Connection")

    await name.fill("Corner Shop")
    await expect(save).to_be_disabled()
    await expect(dialog.get_by_text("Choose a platform to save.")).to_be_visible()
    await platform.select_option("shopify")
    await expect(save).to_be_disabled()
    await expect(dialog.get_by_text("Fix the domain to save.")).to_be_visible()
    # What the domain may be is tests/ui/test_domain_rules.py's subject.
    await domain.fill("corner-shop.myshopify.com")
    await expect(save).to_be_enabled()

    await platform.select_option("woocommerce")
    await expect(domain).to_have_attribute("placeholder", "shop.example.com")
    await expect(save).to_be_enabled()

    await name.fill("   ")
    await expect(dialog.get_by_text("Enter a name for this store.")).to_be_visible()
    await expect(save).to_be_disabled()
    await name.fill("x" * 101)
    await expect(dialog.get_by_text("Use at most 100 characters.")).to_be_visible()
    await expect(save).to_be_disabled()
    await name.fill("Corner Shop")
    await expect(save).to_be_enabled()


async def test_server_refusals_show_next_to_their_field(ui: Session, seller_email: str) -> None:
    page = ui.page
    # The seller connected this store already (another seller's claim would not block it).
    await ui.sign_in(seller_email)
    await ui.create_store("Harbor & Vine", "woocommerce", "shop.harborvine.com")
    await ui.open()

    ui.expect_http_error(409)
    await add_button(page).click()
    dialog = store_dialog(page)
    domain = dialog.get_by_label("Store Domain")
    await fill_store(dialog, "My Harbor", "woocommerce", "https://shop.harborvine.com/")
    await dialog.get_by_role("button", name="Save Connection").click()
    await expect(dialog.locator("#store-domain-error")).to_have_text(
        "This store is already connected."
    )
    await expect(domain).to_have_attribute("aria-invalid", "true")
    await expect(domain).to_be_focused()
    await expect(domain).to_have_value("https://shop.harborvine.com/")
    await expect(dialog.get_by_label("Store Name")).to_have_value("My Harbor")
    await expect(dialog.get_by_role("button", name="Save Connection")).to_be_disabled()
    await expect(dialog.get_by_text("Change the domain to save.")).to_be_visible()
    await ui.shot("duplicate domain", full_page=False)

    await domain.fill("shop.myharbor.com")
    await expect(dialog.locator("#store-domain-error")).to_be_hidden()
    await expect(dialog.get_by_role("button", name="Save Connection")).to_be_enabled()

    # A 422 lands under the field its "loc" names, whatever the field.
    ui.expect_http_error(422)
    refusal = {"detail": [{"loc": ["body", "name"], "msg": "Server says no.", "type": "x"}]}
    await page.route(
        "**/api/integrations",
        lambda route: route.fulfill(status=422, json=refusal),
    )
    await dialog.get_by_role("button", name="Save Connection").click()
    await expect(dialog.locator("#store-name-error")).to_have_text("Server says no.")
    await expect(dialog.get_by_label("Store Name")).to_be_focused()
    await expect(dialog.get_by_label("Store Name")).to_have_value("My Harbor")


async def test_sellers_see_their_own_stores_and_admins_see_all_with_owners(
    ui: Session, seller_email: str, other_seller_email: str, admin_email: str
) -> None:
    page = ui.page
    await other_seller_owns_harbor_and_vine(ui, other_seller_email, then=seller_email)
    await ui.create_store("Northwind Outfitters", "shopify", "northwind.myshopify.com")
    await ui.create_store("Northwind Outlet", "woocommerce", "outlet.northwind.example")

    await ui.open()
    cards = page.get_by_role("article")
    await expect(cards).to_have_count(2)
    await expect(store_card(page, "Harbor & Vine")).to_have_count(0)
    await expect(page.get_by_text("Owner")).to_have_count(0)
    await ui.shot("seller sees own stores")

    await ui.context.clear_cookies()
    await ui.sign_in(admin_email)
    await ui.open()
    await expect(cards).to_have_count(3)
    await expect(page.get_by_text("Admin", exact=True)).to_be_visible()
    for name, owner in (
        ("Harbor & Vine", other_seller_email),
        ("Northwind Outfitters", seller_email),
        ("Northwind Outlet", seller_email),
    ):
        await expect(store_card(page, name)).to_contain_text(f"Owner {owner}")
    await ui.shot("admin sees all stores with owners")

    # A store the admin adds shows the admin as its owner, without a reload.
    await add_button(page).click()
    dialog = store_dialog(page)
    await fill_store(dialog, "Astra Demo", "shopify", "astra-demo.myshopify.com")
    await dialog.get_by_role("button", name="Save Connection").click()
    await store_dialog(page, "Connection Successful!").get_by_role("button", name="Done").click()
    await expect(store_card(page, "Astra Demo")).to_contain_text(f"Owner {admin_email}")


async def test_escape_closes_dialogs_and_focus_returns_to_the_opener(
    ui: Session, seller_email: str
) -> None:
    page = ui.page
    await ui.sign_in(seller_email)
    await ui.create_store("Northwind Outfitters", "shopify", "northwind.myshopify.com")
    await ui.open()
    card = store_card(page, "Northwind Outfitters")

    await add_button(page).focus()
    await page.keyboard.press("Enter")
    await expect(store_dialog(page)).to_be_visible()
    await expect(store_dialog(page).get_by_label("Store Name")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(store_dialog(page)).to_be_hidden()
    await expect(add_button(page)).to_be_focused()

    edit = card.get_by_role("button", name="Edit Northwind Outfitters")
    await edit.click()
    await expect(store_dialog(page, "Edit Store")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(store_dialog(page, "Edit Store")).to_be_hidden()
    await expect(edit).to_be_focused()

    delete = card.get_by_role("button", name="Delete Northwind Outfitters")
    await delete.click()
    confirm = page.get_by_role("dialog", name="Delete “Northwind Outfitters”?")
    await expect(confirm).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(confirm).to_be_hidden()
    await expect(delete).to_be_focused()
    await expect(card).to_be_visible()

    # Keyboard only, start to finish: Tab through the form, Enter to save, Escape to leave.
    await add_button(page).focus()
    await page.keyboard.press("Enter")
    await page.keyboard.type("Keyboard Shop")
    await page.keyboard.press("Tab")
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Tab")
    await page.keyboard.type("keyboard-shop.myshopify.com")
    await page.keyboard.press("Enter")
    success = store_dialog(page, "Connection Successful!")
    await expect(success).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(success).to_be_hidden()
    await expect(add_button(page)).to_be_focused()
    await expect(store_card(page, "Keyboard Shop")).to_be_visible()


async def test_375px_wide_has_no_sideways_scrolling(ui: Session, seller_email: str) -> None:
    page = ui.page
    await page.set_viewport_size({"width": 375, "height": 812})
    await ui.sign_in(seller_email)
    long_label = "the-longest-store-name-anyone-would-ever-type-into-this-field"
    await ui.create_store("Northwind Outfitters", "shopify", "northwind.myshopify.com")
    await ui.create_store(long_label, "woocommerce", f"{long_label}.example.com")

    async def assert_fits() -> None:
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0

    await ui.open()
    await assert_fits()
    await ui.shot("phone grid")
    await add_button(page).click()
    dialog = store_dialog(page)
    await fill_store(dialog, "Pocket Store", "woocommerce", "pocket")
    await assert_fits()
    await ui.shot("phone dialog", full_page=False)
    await dialog.get_by_label("Store Domain").fill("pocket.example.com")
    await dialog.get_by_role("button", name="Save Connection").click()
    success = store_dialog(page, "Connection Successful!")
    await expect(success).to_be_visible()
    await assert_fits()
    box = await success.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 375
    await ui.shot("phone success", full_page=False)


async def test_store_names_render_as_text(ui: Session, seller_email: str) -> None:
    page = ui.page
    await ui.sign_in(seller_email)
    await ui.create_store(XSS_NAME, "shopify", "xss.myshopify.com")
    await ui.open()

    card = store_card(page, XSS_NAME)
    await expect(card.get_by_role("heading")).to_have_text(XSS_NAME)
    await expect(page.locator("#cards img")).to_have_count(0)

    # The same name typed into the form, rendered by the browser code this time.
    script_name = '"><script>alert(2)</script>'
    await add_button(page).click()
    dialog = store_dialog(page)
    await fill_store(dialog, script_name, "shopify", "xss-two.myshopify.com")
    await dialog.get_by_role("button", name="Save Connection").click()
    success = store_dialog(page, "Connection Successful!")
    await expect(success).to_contain_text(f"“{script_name}” is connected.")
    await success.get_by_role("button", name="Done").click()
    await expect(store_card(page, script_name).get_by_role("heading")).to_have_text(script_name)
    await expect(page.locator("#cards script, #cards img")).to_have_count(0)

    await card.get_by_role("button", name="Edit").click()
    await expect(store_dialog(page, "Edit Store").get_by_label("Store Name")).to_have_value(
        XSS_NAME
    )
    await page.keyboard.press("Escape")
    await card.get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("dialog", name=f"Delete “{XSS_NAME}”?")).to_be_visible()
    await ui.shot("names shown literally", full_page=False)
    assert ui.script_dialogs == []


async def test_more_than_one_page_of_stores(ui: Session, seller_email: str) -> None:
    page = ui.page
    await ui.sign_in(seller_email)
    for number in range(52):
        await ui.create_store(f"Store {number:02d}", "shopify", f"store-{number:02d}.myshopify.com")
    await ui.open()
    await expect(page.get_by_role("article")).to_have_count(50)
    await expect(page.get_by_role("article").first.get_by_role("heading")).to_have_text("Store 51")
    more = page.get_by_role("button", name="Show more stores")
    # Signed out meanwhile: the fragment's 401 sends the visitor to sign in, then back.
    ui.expect_http_error(401)
    await ui.context.clear_cookies()
    await more.click()
    await expect(page).to_have_url(f"{ui.base_url}/login?next=%2Fsettings%2Fintegrations")
    await ui.sign_in(seller_email)
    await ui.open()
    await more.click()
    await expect(page.get_by_role("article")).to_have_count(52)
    await expect(page.get_by_role("article").last.get_by_role("heading")).to_have_text("Store 00")
    await expect(more).to_be_hidden()


async def test_signed_out_visitors_sign_in_and_come_back(ui: Session, seller_email: str) -> None:
    page = ui.page
    await ui.open("/settings/integrations?view=all")
    await expect(page).to_have_url(f"{ui.base_url}/login?next=/settings/integrations%3Fview%3Dall")
    await expect(page.get_by_label("Email")).to_be_focused()
    await ui.shot("sign in page")

    ui.expect_http_error(401)
    await page.get_by_label("Email").fill(seller_email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")
    await ui.shot("wrong password")

    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{ui.base_url}/settings/integrations?view=all")
    await expect(page.get_by_role("heading", name="Integrations", exact=True)).to_be_visible()
    await expect(page.get_by_text(seller_email)).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{ui.base_url}/login")
    await ui.open()
    await expect(page).to_have_url(re.compile(r"/login\?next=/settings/integrations$"))

    # Only paths on this site are followed after signing in.
    await ui.open("/login?next=https://evil.example/phish")
    await page.get_by_label("Email").fill(seller_email)
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{ui.base_url}/settings/integrations")


async def test_first_run_setup_creates_the_admin(ui: Session) -> None:
    page = ui.page
    ui.expect_http_error(403)
    await ui.open("/setup?token=guessed")
    await expect(page.get_by_role("heading", name="This link can't be used")).to_be_visible()

    from tests.ui.conftest import SETUP_TOKEN

    await ui.open(f"/setup?token={SETUP_TOKEN}")
    await expect(page.get_by_role("heading", name="Set up Astra")).to_be_visible()
    await page.get_by_label("Email").fill("founder@astra.example")
    await page.get_by_label("Password", exact=True).fill("a long passphrase")
    await page.get_by_label("Confirm password").fill("a different one")
    await page.get_by_role("button", name="Create admin account").click()
    await expect(page.get_by_text("The passwords don't match.")).to_be_visible()
    await ui.shot("setup form")

    await page.get_by_label("Confirm password").fill("a long passphrase")
    await page.get_by_role("button", name="Create admin account").click()
    await expect(page).to_have_url(f"{ui.base_url}/settings/integrations")
    await expect(page.get_by_text("founder@astra.example")).to_be_visible()
    await expect(page.get_by_text("Admin", exact=True)).to_be_visible()

    # The link, used, says so and leads to sign-in; its form is gone.
    await ui.open(f"/setup?token={SETUP_TOKEN}")
    await expect(page.get_by_role("heading", name="Astra is set up")).to_be_visible()
    await expect(page.get_by_role("button", name="Create admin account")).to_have_count(0)
    await page.get_by_role("link", name="Go to sign in").click()
    await expect(page).to_have_url(f"{ui.base_url}/settings/integrations")
