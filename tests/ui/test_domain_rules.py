"""The Store Domain field in real Chromium. The browser checks only that there is an address
to send (its own URL parser pulls the host out of a pasted URL); the server's domain rules
(stores/domains.py) decide the rest, and their sentence shows at the field."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Request, expect

from astra.stores.domains import InvalidDomain, validate_domain
from tests.ui.conftest import Session
from tests.ui.test_integrations_page import (
    fill_store,
    open_add_dialog,
    store_card,
    store_dialog,
)

pytestmark = pytest.mark.ui


def server_sentence(platform: str, domain: str) -> str:
    """What the API says about `domain` for `platform`, from the rules themselves."""
    with pytest.raises(InvalidDomain) as refused:
        validate_domain(platform, domain)
    return str(refused.value)


def writes(ui: Session) -> list[str]:
    """Every request the page sends that could change something."""
    sent: list[str] = []

    def on_request(request: Request) -> None:
        if request.method != "GET":
            sent.append(f"{request.method} {request.url}")

    ui.page.on("request", on_request)
    return sent


async def stores(ui: Session) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await ui.api("GET", "/api/integrations"))["items"]
    return items


@pytest.mark.parametrize("platform", ["shopify", "woocommerce"])
async def test_save_stays_disabled_without_an_address(
    ui: Session, seller_email: str, platform: str
) -> None:
    sent = writes(ui)
    dialog = await open_add_dialog(ui, seller_email)
    domain = dialog.get_by_label("Store Domain")
    error = dialog.locator("#store-domain-error")
    save = dialog.get_by_role("button", name="Save Connection")
    await fill_store(dialog, "Corner Shop", platform, "")
    await domain.blur()
    await expect(error).to_have_text("Enter your store's domain, like my-shop.myshopify.com.")
    await expect(save).to_be_disabled()

    for typed in ("   ", "corner shop", "https://", "shop%.example.com", "shop.example.com:port",
                  "[not-an-address", "http://", "shop,example.com"):  # fmt: skip
        await domain.fill(typed)
        if typed.strip():
            await expect(error).to_contain_text("That doesn't look like a domain.")
        await expect(domain).to_have_attribute("aria-invalid", "true")
        await expect(save).to_be_disabled()
        await expect(dialog.get_by_text("Fix the domain to save.")).to_be_visible()
        # Enter in the field does not send it either.
        await domain.press("Enter")
    await ui.shot("malformed domain", full_page=False)
    assert sent == []
    assert await stores(ui) == []


REFUSED = [
    ("woocommerce", "my-shop.myshopify.com"),
    ("woocommerce", "localhost"),
    ("woocommerce", "http://127.0.0.1:8080/shop"),
    ("shopify", "shop.example.com"),
    ("shopify", "corner_shop.myshopify.com"),
    ("woocommerce", "-shop.example.com"),
]


async def test_the_servers_refusal_shows_at_the_domain_field(
    ui: Session, seller_email: str
) -> None:
    page = ui.page
    ui.expect_http_error(422)
    dialog = await open_add_dialog(ui, seller_email)
    domain = dialog.get_by_label("Store Domain")
    error = dialog.locator("#store-domain-error")
    save = dialog.get_by_role("button", name="Save Connection")

    for platform, typed in REFUSED:
        await fill_store(dialog, "Corner Shop", platform, typed)
        # Shaped like an address, so the browser lets it go: the server is the judge.
        await expect(error).to_be_hidden()
        await expect(save).to_be_enabled()
        await save.click()
        await expect(error).to_have_text(server_sentence(platform, typed))
        await expect(domain).to_have_attribute("aria-invalid", "true")
        await expect(domain).to_be_focused()
        await expect(domain).to_have_value(typed)
        await expect(save).to_be_disabled()
        await expect(dialog.get_by_text("Change the domain to save.")).to_be_visible()
    await ui.shot("domain refused by the server", full_page=False)
    assert await stores(ui) == []
    await expect(page.get_by_role("article")).to_have_count(0)

    # Another platform may take what this one refused: the refusal goes with the choice.
    await dialog.get_by_label("Platform").select_option("shopify")
    await domain.fill("my-shop.myshopify.com")
    await dialog.get_by_label("Platform").select_option("woocommerce")
    await expect(error).to_be_hidden()
    await dialog.get_by_label("Platform").select_option("shopify")
    await save.click()
    await expect(store_dialog(page, "Connection Successful!")).to_be_visible()


async def test_an_edit_the_server_refuses_changes_nothing(ui: Session, seller_email: str) -> None:
    page = ui.page
    await ui.sign_in(seller_email)
    created = await ui.create_store("Linen & Co", "shopify", "linen-and-co.myshopify.com")
    await ui.open()
    ui.expect_http_error(422)
    await store_card(page, "Linen & Co").get_by_role("button", name="Edit").click()
    edit = store_dialog(page, "Edit Store")
    await edit.get_by_label("Store Domain").fill("linen-and-co.com")
    await edit.get_by_role("button", name="Save Changes").click()
    await expect(edit.locator("#store-domain-error")).to_have_text(
        server_sentence("shopify", "linen-and-co.com")
    )
    [stored] = await stores(ui)
    assert stored["domain"] == created["domain"]
    await page.keyboard.press("Escape")
    await expect(store_card(page, "Linen & Co")).to_contain_text("linen-and-co.myshopify.com")


@pytest.mark.parametrize(
    ("platform", "pasted", "saved"),
    [
        ("shopify", "HTTPS://My-Shop.myshopify.com/admin", "my-shop.myshopify.com"),
        ("woocommerce", "https://Bücher.Example/shop?page=2", "xn--bcher-kva.example"),
    ],
)
async def test_a_pasted_url_is_stored_normalised(
    ui: Session, seller_email: str, platform: str, pasted: str, saved: str
) -> None:
    page = ui.page
    dialog = await open_add_dialog(ui, seller_email)
    await fill_store(dialog, "Pasted", platform, pasted)
    await expect(dialog.get_by_text(f"Will be saved as {saved}.")).to_be_visible()
    await dialog.get_by_role("button", name="Save Connection").click()
    success = store_dialog(page, "Connection Successful!")
    await expect(success).to_be_visible()
    [stored] = await stores(ui)
    assert stored["domain"] == saved == validate_domain(platform, pasted)
    await success.get_by_role("button", name="Done").click()
    card = store_card(page, "Pasted")
    await expect(card.locator(".card-domain")).to_have_text(saved)
    await expect(card).to_have_attribute("data-domain", saved)
