"""The pages without a browser: redirects around sign-in, the setup link, static assets,
and the page weight budget. (Behaviour in the page itself is tested in tests/ui/.)"""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.web.redirects import HOME, safe_next
from testkit.stores import connect_store, send_order
from tests.conftest import Account, TestDatabase, client_for, make_user, running


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/settings/integrations", "/login?next=/settings/integrations"),
        ("/settings/integrations?view=all", "/login?next=/settings/integrations%3Fview%3Dall"),
    ],
)
async def test_signed_out_visitors_are_sent_to_sign_in(
    anonymous: httpx.AsyncClient, path: str, location: str
) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == location


async def test_an_expired_or_forged_session_is_signed_out(anonymous: httpx.AsyncClient) -> None:
    anonymous.cookies.set("astra_session", "forged")
    response = await anonymous.get("/settings/integrations")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


async def test_the_login_page_carries_a_safe_next(anonymous: httpx.AsyncClient) -> None:
    page = await anonymous.get("/login", params={"next": "/settings/integrations?view=all"})
    assert page.status_code == 200
    assert 'data-next="/settings/integrations?view=all"' in page.text
    hostile = await anonymous.get("/login", params={"next": "https://evil.example/"})
    assert f'data-next="{HOME}"' in hostile.text


async def test_signed_in_visitors_skip_the_login_page(seller: Account) -> None:
    response = await seller.client.get("/login", params={"next": "/settings/integrations?a=1"})
    assert response.status_code == 303
    assert response.headers["location"] == "/settings/integrations?a=1"
    response = await seller.client.get("/login", params={"next": "//evil.example"})
    assert response.headers["location"] == HOME


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/settings/integrations", "/settings/integrations"),
        ("/settings/integrations?view=all#top", "/settings/integrations?view=all#top"),
        (None, HOME),
        ("", HOME),
        ("settings", HOME),
        ("//evil.example", HOME),
        ("///evil.example", HOME),
        ("/\\evil.example", HOME),
        ("/\t/evil.example", HOME),
        ("https://evil.example/", HOME),
        ("javascript:alert(1)", HOME),
        ("/" + "a" * 2001, HOME),
    ],
)
def test_only_paths_on_this_site_are_followed(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


async def test_home_goes_to_the_integrations_page(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == HOME


async def test_setup_page_needs_the_printed_link(anonymous: httpx.AsyncClient) -> None:
    # The test app has no set-up token, so no link works.
    response = await anonymous.get("/setup", params={"token": "guess"})
    assert response.status_code == 403
    assert "This link can't be used" in response.text
    assert 'id="setup-form"' not in response.text


async def test_a_used_setup_link_says_astra_is_set_up(
    test_database: TestDatabase, owner_engine: AsyncEngine, password_hash: str
) -> None:
    settings = test_database.settings.model_copy(update={"setup_token": "printed-link-token"})
    async with running(settings) as application, client_for(application) as client:
        fresh = await client.get("/setup", params={"token": "printed-link-token"})
        await make_user(owner_engine, "founder@example.com", "admin", password_hash)
        used = await client.get("/setup", params={"token": "printed-link-token"})

    assert fresh.status_code == 200
    assert 'id="setup-form"' in fresh.text
    assert used.status_code == 200
    assert "<h1>Astra is set up</h1>" in used.text
    assert 'id="setup-form"' not in used.text
    assert 'href="/login"' in used.text


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/static/astra.css", "text/css"),
        ("/static/js/integrations.js", "javascript"),
        ("/static/js/store-tools.js", "javascript"),
        ("/static/favicon.svg", "image/svg+xml"),
        ("/static/marks/shopify.svg", "image/svg+xml"),
        ("/static/marks/woocommerce.svg", "image/svg+xml"),
    ],
)
async def test_static_assets_are_served_by_the_app(
    anonymous: httpx.AsyncClient, path: str, media_type: str
) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 200
    assert media_type in response.headers["content-type"]
    assert response.headers["cache-control"] == "no-cache"
    assert "etag" in response.headers


async def page_with_cards(account: Account, count: int) -> str:
    for number in range(count):
        created = await account.client.post(
            "/api/integrations",
            json={
                "name": f"Store number {number:02d} with a realistic name",
                "type": "woocommerce" if number % 2 else "shopify",
                "domain": f"store-number-{number:02d}.myshopify.com"
                if number % 2 == 0
                else f"shop.store-number-{number:02d}.example.com",
            },
        )
        assert created.status_code == 201, created.text
    page = await account.client.get("/settings/integrations")
    assert page.status_code == 200
    return page.text


def linked_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


async def test_everything_the_page_loads_comes_from_the_app(admin: Account) -> None:
    html = await page_with_cards(admin, 1)
    assert not re.search(r'(?:src|href|action)="(?:https?:)?//', html)
    assert set(linked_assets(html)) == {
        "/static/favicon.svg",
        "/static/astra.css",
        "/static/js/integrations.js",
    }


async def test_the_page_with_50_cards_weighs_under_100_kb(admin: Account) -> None:
    """HTML + CSS + JS the page loads, in bytes sent to a browser: the stylesheet and scripts
    gzipped (web/assets.py), the page itself not.

    The edit dialog's tools (store-tools.js) load later, the first time a seller opens
    one: they are not part of loading the page, and are held to a budget of their own."""
    html = await page_with_cards(admin, 50)
    assert len(re.findall(r'<article class="card" data-id="[0-9a-f-]{36}"', html)) == 50
    page = await admin.client.get("/settings/integrations", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in page.headers
    pending = [path for path in linked_assets(html) if path.endswith((".css", ".js"))]
    sent: dict[str, int] = {}
    on_demand: set[str] = set()
    while pending:
        path = pending.pop()
        if path in sent:
            continue
        response = await admin.client.get(path, headers={"accept-encoding": "gzip"})
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        sent[path] = response.num_bytes_downloaded
        # ES module imports load too.
        pending += [
            f"/static/js/{name}" for name in re.findall(r'from "\./([\w-]+\.js)"', response.text)
        ]
        on_demand |= {
            f"/static/js/{name}"
            for name in re.findall(r'import\("\./([\w-]+\.js)"\)', response.text)
        }
    assert "/static/js/ui.js" in sent
    assert on_demand == {"/static/js/store-tools.js"}
    tools = await admin.client.get("/static/js/store-tools.js", headers={"accept-encoding": "gzip"})
    assert re.findall(r'from "\./([\w-]+\.js)"', tools.text) == ["ui.js"]
    assert len(tools.content) < 8 * 1024
    # 100 KB read strictly (100,000 bytes), the tools loaded on demand counted too.
    total = len(html.encode()) + sum(sent.values()) + tools.num_bytes_downloaded
    assert total < 100_000, f"{total} bytes"


async def test_user_text_is_escaped_in_the_html(seller: Account) -> None:
    name = '<img src=x onerror=alert(1)>"'
    created = await seller.client.post(
        "/api/integrations", json={"name": name, "type": "shopify", "domain": "x.myshopify.com"}
    )
    assert created.status_code == 201
    html = (await seller.client.get("/settings/integrations")).text
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&#34;" in html


def card_html(html: str, name: str) -> str:
    match = re.search(
        rf"<article [^>]*>(?:(?!</article>).)*<h3>{name}</h3>.*?</article>", html, re.S
    )
    assert match, name
    return match.group(0)


async def test_cards_say_how_many_orders_arrived_and_when(
    seller: Account, anonymous: httpx.AsyncClient
) -> None:
    """Server-rendered; tests/ui checks the same words as the browser writes them."""
    linen = await connect_store(seller, "shopify", "linen-and-co.myshopify.com")
    await connect_store(seller, "woocommerce", "cups.example.com")
    for order_id in (1, 2):
        assert (await send_order(anonymous, linen, order_id)).status_code == 200

    html = (await seller.client.get("/settings/integrations")).text
    linen_card = card_html(html, "linen-and-co.myshopify.com store")
    assert re.search(
        r'<p class="card-orders">2 orders · last '
        r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">seconds ago</time></p>',
        linen_card,
    )
    assert "Paused" not in linen_card
    cups_card = card_html(html, "cups.example.com store")
    assert '<p class="card-orders">Waiting for first order</p>' in cups_card

    # Paused: still received and kept, and the card says so.
    paused = await seller.client.put(f"/api/integrations/{linen.id}", json={"is_active": False})
    assert paused.status_code == 200
    held = await send_order(anonymous, linen, 3)
    assert held.json()["outcome"] == "held"
    html = (await seller.client.get("/settings/integrations")).text
    assert re.search(
        r'<p class="card-orders"><b>Paused — orders are kept</b>3 orders · last <time ',
        card_html(html, "linen-and-co.myshopify.com store"),
    )


async def test_cards_draw_each_sync_state(seller: Account, owner_engine: AsyncEngine) -> None:
    """Server-rendered sync lines (tests/ui/test_sync_card.py drives them in a browser): a
    bar with its numbers, an indeterminate one without a total, the last sync and what it
    recovered, a failure and Try again in place of Sync now; nothing new before the first."""
    # A running sync holds a live claim (syncs_running_claim).
    RUNNING = "state = 'running', run_id = gen_random_uuid(), heartbeat_at = now()"
    states = {
        "running": f"{RUNNING}, imported = 1250, total = 4000",
        "unknown": f"{RUNNING}, imported = 0, total = NULL",
        "done": "state = 'done', missed_by_webhook = 12, last_synced_at = now()",
        "quiet": "state = 'done', missed_by_webhook = 0, last_synced_at = now()",
        "failed": "state = 'failed', error = 'The store took too long to answer.'",
        "never": None,
    }
    for name, values in states.items():
        created = await seller.client.post(
            "/api/integrations",
            json={
                "name": name,
                "type": "woocommerce",
                "domain": f"{name}.example.com",
                "credentials": {
                    "consumer_key": "ck_" + "a" * 40,
                    "consumer_secret": "cs_" + "b" * 40,
                },
            },
        )
        assert created.status_code == 201, created.text
        if values is None:
            continue
        async with owner_engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO syncs (integration_id, user_id, state) "
                    "SELECT id, user_id, 'queued' FROM integrations WHERE id = :id"
                ),
                {"id": created.json()["id"]},
            )
            await connection.execute(
                text(f"UPDATE syncs SET {values} WHERE integration_id = :id"),
                {"id": created.json()["id"]},
            )

    html = (await seller.client.get("/settings/integrations")).text
    cards = {name: card_html(html, name) for name in states}
    assert re.search(
        r'<progress max="4000" value="1250" aria-label="Importing past orders of running">'
        r"</progress><span>Importing past orders · 1,250 of 4,000</span>",
        cards["running"],
    )
    assert " data-syncing>" in cards["running"] and " data-syncing>" in cards["unknown"]
    assert '<progress aria-label="Importing past orders of unknown"></progress>' in cards["unknown"]
    assert re.search(
        r'<p class="card-sync">Last synced <time datetime="[\dT:Z-]+">seconds ago</time> · '
        r"12 recovered by sync</p>",
        cards["done"],
    )
    assert "recovered" not in cards["quiet"] and "Last synced" in cards["quiet"]
    assert (
        '<p class="card-sync" data-tone="warn">The store took too long to answer. '
        '<button data-action="sync" aria-label="Try syncing failed again">Try again</button></p>'
    ) in cards["failed"]
    assert "Sync now" not in cards["failed"]
    assert "card-sync" not in cards["never"] and "Sync now" in cards["never"]
    for name in ("running", "done", "quiet", "never"):
        assert 'data-action="sync" aria-label="Sync now for' in cards[name], name
    for name in ("done", "quiet", "failed", "never"):
        assert "data-syncing" not in cards[name], name
    # The fragment a polling card fetches draws the same.
    fragment = await seller.client.get(f"/settings/integrations/cards/{_id(html, 'running')}")
    assert card_html(fragment.text, "running") == cards["running"]


def _id(html: str, name: str) -> str:
    match = re.search(r'data-id="([0-9a-f-]{36})"', card_html(html, name))
    assert match
    return match.group(1)
