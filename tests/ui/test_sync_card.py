"""The store's sync on its card in real Chromium (issue 12, "What people see"): Sync now, the
progress bar the card redraws every 2 s, then when it last synced and what it recovered; a
failed sync's reason and Try again, by keyboard; the card at 375 px.

The live server here runs its own queue worker (as `astra serve` does), so a sync queued
from the page runs against the simulated store over real HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, expect

from testkit.simulators.server import StoreServer
from testkit.simulators.woocommerce import SimulatedWooCommerce
from tests.conftest import TestDatabase
from tests.ui.conftest import Session, browsing, serving
from tests.ui.test_integrations_page import store_card
from tests.ui.test_store_api import woo_credentials

pytestmark = pytest.mark.ui

ORDERS = 150


@pytest.fixture(scope="module")
def worker_live_server(test_database: TestDatabase, store_server: StoreServer) -> Iterator[str]:
    """As store_live_server, with its in-process worker taking jobs every 0.2 s. Module-wide
    only: it would run what other modules' tests queue and leave unrun on purpose."""
    base = test_database.settings.model_copy(
        update={"access_log": False, "in_process_worker": True, "worker_poll_seconds": 0.2}
    )
    with serving(store_server.settings(base)) as url:
        yield url


@pytest.fixture
async def sync_ui(
    browser: Browser, worker_live_server: str, request: pytest.FixtureRequest
) -> AsyncIterator[Session]:
    async with browsing(browser, worker_live_server, request.node.name) as session:
        yield session


@pytest.fixture
def woo(store_server: StoreServer, fresh_domain: Callable[[str], str]) -> SimulatedWooCommerce:
    store = store_server.add(SimulatedWooCommerce(fresh_domain("mugs{}.example.com")))
    store.seed(ORDERS, days=365)
    return store


async def store_with_key(ui: Session, email: str, woo: SimulatedWooCommerce) -> Any:
    """A WooCommerce store with working credentials, never synced (no check ran, which
    would queue the first sync by itself)."""
    await ui.sign_in(email)
    body = {
        "name": "Mugs & Co",
        "type": "woocommerce",
        "domain": woo.domain,
        "credentials": woo_credentials(woo.add_key()),
    }
    return await ui.api("POST", "/api/integrations", body)


def sync_line(card: Locator) -> Locator:
    return card.locator(".card-sync")


async def test_sync_now_shows_progress_then_what_it_recovered(
    sync_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = sync_ui.page
    store = await store_with_key(sync_ui, seller_email, woo)
    await sync_ui.open()
    card = store_card(page, "Mugs & Co")
    # Never synced: nothing new but the action.
    await expect(sync_line(card)).to_have_count(0)
    await expect(card.locator(".card-orders")).to_have_text("Waiting for first order")

    # The store is busy for its first answer: the run waits 5 s, in view on the card.
    woo.answer_busy(503, retry_after="5")
    await card.get_by_role("button", name="Sync now for Mugs & Co").click()
    bar = card.get_by_role("progressbar", name="Importing past orders of Mugs & Co")
    # A loaded machine may take seconds to redraw the card: the busy store waits longer.
    await expect(bar).to_be_visible(timeout=15_000)
    await expect(sync_line(card)).to_contain_text("Importing past orders")
    await sync_ui.shot("importing")

    # The card follows the run by itself, and stops once it is done. The store's orders were
    # placed before it was connected: imported, not missed by a webhook, so nothing recovered.
    done = sync_line(card)
    await expect(done).to_have_text("Last synced seconds ago", timeout=20_000)
    await expect(bar).to_have_count(0)
    await expect(card.locator(".card-orders")).to_contain_text(f"{ORDERS} orders · last")
    await sync_ui.shot("synced")

    # Orders placed since, whose webhooks never came: the next sync recovers them.
    for _ in range(3):
        woo.add_order()
    await card.get_by_role("button", name="Sync now for Mugs & Co").click()
    await expect(done).to_have_text("Last synced seconds ago · 3 recovered by sync", timeout=20_000)
    await expect(card.locator(".card-orders")).to_contain_text(f"{ORDERS + 3} orders · last")
    state = await sync_ui.api("GET", f"/api/integrations/{store['id']}/sync")
    assert (state["state"], state["missed_by_webhook"]) == ("done", 3)


async def test_a_failed_sync_says_why_and_tries_again_by_keyboard(
    sync_ui: Session, seller_email: str, woo: SimulatedWooCommerce
) -> None:
    page = sync_ui.page
    store = await store_with_key(sync_ui, seller_email, woo)
    key = woo.keys[0]
    woo.keys.clear()
    await sync_ui.open()
    card = store_card(page, "Mugs & Co")

    sync_now = card.get_by_role("button", name="Sync now for Mugs & Co")
    await sync_now.focus()
    await page.keyboard.press("Enter")
    line = sync_line(card)
    await expect(line).to_have_attribute("data-tone", "warn", timeout=20_000)
    error = (await sync_ui.api("GET", f"/api/integrations/{store['id']}/sync"))["error"]
    assert error
    await expect(line).to_have_text(f"{error} Try again")
    # Try again takes Sync now's place, and the focus that was on it.
    await expect(sync_now).to_have_count(0)
    again = card.get_by_role("button", name="Try syncing Mugs & Co again")
    await expect(again).to_be_focused()

    await page.set_viewport_size({"width": 375, "height": 812})
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    box = await card.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 375
    await sync_ui.shot("failed-375")

    # The key is back: Enter on Try again, and the card ends done.
    woo.keys.append(key)
    await page.keyboard.press("Enter")
    await expect(line).to_have_text("Last synced seconds ago", timeout=20_000)
    await expect(line).not_to_have_attribute("data-tone", "warn")
    await expect(sync_now).to_be_focused()
