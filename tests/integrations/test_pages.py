"""The card fragments the integrations page fetches (integrations/pages.py): the page's own
markup, scoped as the API is, for each kind of caller. In the browser: tests/ui/."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.tables import Platform
from astra.integrations.pages import CARDS, NEXT_CURSOR, Health, connection_health, credentials_kind
from astra.integrations.schemas import ConnectionState, IntegrationRead
from tests.conftest import Account
from tests.integrations.test_api import (
    NOT_FOUND,
    NOT_SIGNED_IN,
    NOT_YOURS,
    create,
    insert_rows,
)

ARTICLE = re.compile(r"<article .*?</article>", re.S)


def cards_in(html: str) -> list[str]:
    return ARTICLE.findall(html)


def card_ids(html: str) -> list[str]:
    return re.findall(r'<article class="card" data-id="([0-9a-f-]{36})"', html)


def assert_fragment(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    # Just the cards: no page around them.
    assert "<html" not in response.text
    assert "<dialog" not in response.text


@pytest.fixture
async def owned(seller: Account) -> dict[str, Any]:
    return await create(seller.client, name='Corner "Shop" <b>', domain="corner.example.com")


# --- one card ----------------------------------------------------------------------------


async def test_anonymous_gets_401_not_a_redirect(
    anonymous: httpx.AsyncClient, owned: dict[str, Any]
) -> None:
    for path in (f"{CARDS}/{owned['id']}", f"{CARDS}/not-a-uuid", f"{CARDS}?cursor=x", CARDS):
        response = await anonymous.get(path)
        assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN), path
        assert "location" not in response.headers


async def test_the_owner_gets_the_card_the_page_shows(
    seller: Account, owned: dict[str, Any]
) -> None:
    response = await seller.client.get(f"{CARDS}/{owned['id']}")
    assert_fragment(response)
    [card] = cards_in(response.text)
    page = (await seller.client.get("/settings/integrations")).text
    assert cards_in(page) == [card]
    # What the dialogs start from, escaped like the text.
    assert f'data-id="{owned["id"]}" data-type="woocommerce"' in card
    assert 'data-name="Corner &#34;Shop&#34; &lt;b&gt;"' in card
    assert 'data-domain="corner.example.com" data-active="true"' in card
    assert "<b>" not in card
    assert "Owner" not in card


async def test_the_card_is_drawn_as_the_store_is_now(
    seller: Account, owned: dict[str, Any]
) -> None:
    paused = await seller.client.put(
        f"/api/integrations/{owned['id']}", json={"is_active": False, "name": "Renamed"}
    )
    assert paused.status_code == 200
    card = (await seller.client.get(f"{CARDS}/{owned['id']}")).text
    assert 'data-name="Renamed"' in card
    assert 'data-active="false"' in card
    assert "<h3>Renamed</h3>" in card
    assert "Paused — orders are kept" in card


async def test_another_seller_gets_403(other_seller: Account, owned: dict[str, Any]) -> None:
    response = await other_seller.client.get(f"{CARDS}/{owned['id']}")
    assert (response.status_code, response.json()) == (403, NOT_YOURS)


async def test_an_admin_gets_any_card_with_its_owner(
    admin: Account, seller: Account, owned: dict[str, Any]
) -> None:
    response = await admin.client.get(f"{CARDS}/{owned['id']}")
    assert_fragment(response)
    [card] = cards_in(response.text)
    assert f'<p class="card-owner">Owner <span>{seller.email}</span></p>' in card


async def test_an_unknown_id_is_404_whoever_asks(
    seller: Account, other_seller: Account, admin: Account, owned: dict[str, Any]
) -> None:
    for account in (seller, other_seller, admin):
        response = await account.client.get(f"{CARDS}/{uuid.uuid4()}")
        assert (response.status_code, response.json()) == (404, NOT_FOUND), account.email


async def test_a_malformed_id_is_422(seller: Account) -> None:
    response = await seller.client.get(f"{CARDS}/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "integration_id"]


# --- the pages after the first -----------------------------------------------------------


async def test_show_more_walks_the_owners_cards_to_the_end(
    seller: Account, owner_engine: AsyncEngine
) -> None:
    await insert_rows(owner_engine, seller.id, 101)
    page = (await seller.client.get("/settings/integrations")).text
    cursor = re.search(r'data-action="more" data-cursor="([^"]+)"', page)
    assert cursor
    seen = card_ids(page)
    second = await seller.client.get(CARDS, params={"cursor": cursor.group(1)})
    assert_fragment(second)
    assert len(card_ids(second.text)) == 50
    third = await seller.client.get(CARDS, params={"cursor": second.headers[NEXT_CURSOR]})
    assert_fragment(third)
    assert NEXT_CURSOR not in third.headers
    seen += card_ids(second.text) + card_ids(third.text)
    api = (await seller.client.get("/api/integrations", params={"limit": 200})).json()
    assert seen == [item["id"] for item in api["items"]]


async def test_a_cursor_shows_each_caller_only_what_they_may_see(
    seller: Account, other_seller: Account, admin: Account, owner_engine: AsyncEngine
) -> None:
    await insert_rows(owner_engine, seller.id, 51)
    page = (await seller.client.get("/settings/integrations")).text
    cursor = re.search(r'data-cursor="([^"]+)"', page)
    assert cursor
    mine = await seller.client.get(CARDS, params={"cursor": cursor.group(1)})
    theirs = await other_seller.client.get(CARDS, params={"cursor": cursor.group(1)})
    everyone = await admin.client.get(CARDS, params={"cursor": cursor.group(1)})
    for response in (mine, theirs, everyone):
        assert_fragment(response)
    assert len(card_ids(mine.text)) == 1
    assert card_ids(theirs.text) == []
    assert card_ids(everyone.text) == card_ids(mine.text)
    assert "Owner" in everyone.text
    assert "Owner" not in mine.text


async def test_a_bad_cursor_is_422(seller: Account) -> None:
    for params in ({"cursor": "not-a-cursor"}, {}):
        response = await seller.client.get(CARDS, params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


# --- the connection's health line ---------------------------------------------------------


def read_model(platform: str, **fields: Any) -> IntegrationRead:
    now = datetime.now(UTC)
    connection = fields.pop("connection", {})
    return IntegrationRead(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        owner_email="seller@example.com",
        name="Cups",
        type=Platform(platform),
        domain="cups.example.com",
        is_active=True,
        created_at=now,
        updated_at=now,
        webhook_url="https://astra.example.com/api/webhooks/order?id=x",
        connection=ConnectionState.model_validate(connection),
        **fields,
    )


CHECKED = {"checked_at": "2026-01-05T10:00:00Z", "message": "Connected to Cups."}


@pytest.mark.parametrize(
    ("platform", "credentials", "connection", "line"),
    [
        ("woocommerce", False, {}, None),
        ("woocommerce", False, CHECKED | {"problem": "invalid_credentials"}, None),
        ("woocommerce", False, {"superseded": True}, ("warn", "Another account proved this store")),
        ("woocommerce", True, {"superseded": True}, ("warn", "Another account proved this store")),
        ("shopify", True, {}, ("muted", "Not checked yet")),
        (
            "woocommerce",
            True,
            CHECKED | {"problem": "invalid_credentials", "webhooks": "active"},
            ("warn", "Credentials rejected", "edit-credentials", "Edit credentials"),
        ),
        (
            "shopify",
            True,
            CHECKED | {"problem": "refused_address"},
            ("warn", "The store's address isn't public", "edit", "Check the domain"),
        ),
        (
            "shopify",
            True,
            CHECKED | {"problem": "timeout"},
            ("warn", "The store took too long to answer"),
        ),
        ("shopify", True, CHECKED | {"problem": "new_one"}, ("warn", "The last check failed")),
        (
            "woocommerce",
            True,
            CHECKED,
            ("muted", "Connected · webhooks not set up", "setup", "Set up webhooks"),
        ),
        ("shopify", True, CHECKED | {"webhooks": "active"}, ("ok", "Connected · webhooks active")),
        (
            "woocommerce",
            True,
            CHECKED | {"webhooks": "disabled"},
            ("warn", "Woo disabled the webhook", "reenable", "Re-enable"),
        ),
        (
            "shopify",
            True,
            CHECKED | {"webhooks": "missing"},
            ("warn", "Shopify removed the webhook", "reenable", "Set up again"),
        ),
        (
            "woocommerce",
            True,
            CHECKED | {"webhooks": "missing"},
            ("warn", "A webhook is missing", "reenable", "Set up again"),
        ),
    ],
)
def test_the_status_line_follows_the_read_model(
    platform: str, credentials: bool, connection: dict[str, Any], line: tuple[str, ...] | None
) -> None:
    item = read_model(platform, has_credentials=credentials, connection=connection)
    assert connection_health(item) == (Health(*line) if line else None)


@pytest.mark.parametrize(
    ("platform", "credentials", "token", "kind"),
    [
        ("woocommerce", True, False, "woocommerce_key"),
        ("shopify", True, True, "shopify_token"),
        ("shopify", True, False, "shopify_app"),
        ("shopify", False, False, None),
        ("woocommerce", False, False, None),
    ],
)
def test_which_credentials_are_saved_is_told_from_the_read_model(
    platform: str, credentials: bool, token: bool, kind: str | None
) -> None:
    item = read_model(platform, has_credentials=credentials, has_admin_access_token=token)
    assert credentials_kind(item) == kind


async def test_a_card_with_credentials_says_so_and_never_shows_them(
    seller: Account, owned: dict[str, Any]
) -> None:
    secret = "cs_" + "5" * 40
    woo = await create(
        seller.client,
        name="Cups",
        domain="cups.example.com",
        credentials={"consumer_key": "ck_" + "4" * 40, "consumer_secret": secret},
    )
    legacy = await create(
        seller.client,
        name="Linen",
        type="shopify",
        domain="linen.myshopify.com",
        admin_access_token="shpat_" + "6" * 32,
    )
    cards = {
        created["id"]: (await seller.client.get(f"{CARDS}/{created['id']}")).text
        for created in (woo, legacy, owned)
    }

    card = cards[woo["id"]]
    assert 'data-active="true" data-credentials="woocommerce_key">' in card
    assert '<p class="card-status" data-tone="muted">Not checked yet</p>' in card
    assert '<button data-action="test" aria-label="Test connection for Cups">' in card
    assert secret not in card and "ck_4444" not in card
    assert 'data-credentials="shopify_token"' in cards[legacy["id"]]
    assert "shpat_" not in cards[legacy["id"]]
    # No credentials: the card as it always was.
    for absent in ("data-credentials", "card-status", 'data-action="test"'):
        assert absent not in cards[owned["id"]]
