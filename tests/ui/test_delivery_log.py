"""A refused delivery in the seller's delivery log, in real Chromium: the badge and the
sentence that says why."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import expect

from testkit.stores import deliver, encode, shopify_headers, shopify_order
from tests.ui.conftest import Session
from tests.ui.test_integrations_page import store_dialog
from tests.ui.test_orders_and_secrets import as_store, open_edit

pytestmark = pytest.mark.ui


async def test_a_refused_replay_shows_why(ui: Session, seller_email: str) -> None:
    page = ui.page
    await ui.sign_in(seller_email)
    store = as_store(await ui.create_store("Linen & Co", "shopify", "linen-and-co.myshopify.com"))
    body = encode(shopify_order(42))
    async with httpx.AsyncClient(base_url=ui.base_url) as client:
        replay = await deliver(
            client, store, body, shopify_headers(store, body, topic="orders/delete")
        )
    assert replay.json() == {"outcome": "refused"}

    await ui.open()
    edit = await open_edit(page, "Linen & Co")
    await edit.get_by_role("button", name="View deliveries").click()
    deliveries = store_dialog(page, "Recent Deliveries")
    rows = deliveries.locator("tbody tr")
    await expect(rows.nth(0).locator("td")).to_have_text(
        ["seconds ago", "orders/delete", "Refused"]
    )
    await expect(rows.nth(1)).to_contain_text("so it is not a delete")
    await ui.shot("refused delivery", full_page=False)
