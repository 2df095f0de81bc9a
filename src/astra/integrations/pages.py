"""The /settings/integrations page, and the card fragments its script fetches: all drawn by
`_card.html`, from the same service calls (and so the same access rule) as the API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from astra.auth.deps import CurrentUser, OptionalUser
from astra.db.session import Db
from astra.db.tables import CredentialsKind, Platform, WebhookStatus
from astra.http import SettingsDep
from astra.integrations import service
from astra.integrations.api import to_read, webhook_base
from astra.integrations.schemas import IntegrationRead
from astra.integrations.service import IntegrationRow
from astra.settings import Settings
from astra.sync import state as sync_state
from astra.sync.state import SyncState
from astra.web.redirects import login_redirect
from astra.web.templating import page_templates, render

router = APIRouter(include_in_schema=False)
templates = page_templates(Path(__file__).parent / "templates")


@dataclass(frozen=True, slots=True)
class Health:
    """A card's one status line: its dot's tone, its words, and at most one remedy (a
    data-action integrations.js handles, and the button's label)."""

    tone: Literal["ok", "warn", "muted"]
    text: str
    action: str | None = None
    label: str | None = None


EDIT = ("edit-credentials", "Edit credentials")
# What the last check found, when it failed: the words, and whether Edit is the remedy
# (otherwise it is the store's to fix, and "Test connection" tries again).
PROBLEMS = {
    "invalid_credentials": ("Credentials rejected", EDIT),
    "wrong_store": ("Credentials for another store", EDIT),
    "missing_scope": ("Credentials lack a permission", EDIT),
    "refused_address": ("The store's address isn't public", ("edit", "Check the domain")),
    "store_unavailable": ("The store couldn't answer", None),
    "unreachable": ("Couldn't reach the store", None),
    "timeout": ("The store took too long to answer", None),
}
# What the store has done to a webhook Astra set up: WooCommerce disables one after more
# than 5 failed deliveries, Shopify deletes one after 8 (setting up again brings it back).
# "Woo", as DESIGN.md writes it: the line and its action fit on one line of a card.
REMEDIES = {
    WebhookStatus.disabled: ("reenable", "Re-enable"),
    WebhookStatus.missing: ("reenable", "Set up again"),
}
WEBHOOKS = {
    (Platform.woocommerce, WebhookStatus.disabled): "Woo disabled the webhook",
    (Platform.shopify, WebhookStatus.missing): "Shopify removed the webhook",
}


def _health(
    tone: Literal["ok", "warn", "muted"], text: str, remedy: tuple[str, str] | None
) -> Health:
    return Health(tone, text, *(remedy or (None, None)))


def connection_health(item: IntegrationRead) -> Health | None:
    """The card's status line, from the read model alone; none without credentials (the
    card stays as it was), unless another account's credentials proved the store."""
    connection = item.connection
    if connection.superseded:
        return Health("warn", "Another account proved this store")
    if not item.has_credentials:
        return None
    if connection.checked_at is None:
        return Health("muted", "Not checked yet")
    if connection.problem is not None:
        text, remedy = PROBLEMS.get(connection.problem, ("The last check failed", None))
        return _health("warn", text, remedy)
    if connection.webhooks is None:
        return Health("muted", "Connected · webhooks not set up", "setup", "Set up webhooks")
    if connection.webhooks == WebhookStatus.active:
        return Health("ok", "Connected · webhooks active")
    status = connection.webhooks
    text = WEBHOOKS.get((item.type, status), f"A webhook is {status.value}")
    return _health("warn", text, REMEDIES[status])


def credentials_kind(item: IntegrationRead) -> CredentialsKind | None:
    """Which credentials are stored, told without reading them: they always match the
    platform, and a Shopify token is what has_admin_access_token says."""
    if not item.has_credentials:
        return None
    if item.type == Platform.woocommerce:
        return CredentialsKind.woocommerce_key
    if item.has_admin_access_token:
        return CredentialsKind.shopify_token
    return CredentialsKind.shopify_app


templates.env.globals["health"] = connection_health
templates.env.globals["credentials_kind"] = credentials_kind

# The first page matches the API's default; "Show more" fetches the next ones as fragments.
PAGE_SIZE = 50
CARDS = "/settings/integrations/cards"
# Where a page of cards says which page follows (absent on the last one).
NEXT_CURSOR = "Astra-Next-Cursor"


async def _cards(
    request: Request,
    db: Db,
    settings: Settings,
    rows: list[IntegrationRow],
    syncs: dict[uuid.UUID, SyncState] | None = None,
) -> dict[str, object]:
    """What _cards.html draws: the stores, and their syncs read in one query for them all
    (unless read already)."""
    base = webhook_base(request, settings)
    cards = [to_read(row, base) for row in rows]
    if syncs is None:
        syncs = await sync_state.read_many(db, [card.id for card in cards])
    return {"integrations": cards, "syncs": syncs}


@router.get("/settings/integrations", response_model=None)
async def integrations_page(
    request: Request, db: Db, user: OptionalUser, settings: SettingsDep
) -> HTMLResponse | RedirectResponse:
    if user is None:
        return login_redirect(request)
    page = await service.list_integrations(db, user, limit=PAGE_SIZE, cursor=None)
    context = {
        "user": user,
        **await _cards(request, db, settings, page.rows),
        "next_cursor": page.next_cursor,
        "grace_hours": settings.secret_grace_hours,
    }
    return render(templates, request, "integrations.html", context)


# Fragments answer a signed-out browser with 401, as the API does: the script that asked
# sends the visitor to sign in, where a redirect would hand it the login page as a card.
@router.get(CARDS)
async def cards_fragment(
    request: Request,
    db: Db,
    user: CurrentUser,
    settings: SettingsDep,
    cursor: Annotated[str, Query(max_length=200)],
) -> HTMLResponse:
    """The page of cards after `cursor`: what "Show more stores" appends."""
    page = await service.list_integrations(db, user, limit=PAGE_SIZE, cursor=cursor)
    context = {"user": user, **await _cards(request, db, settings, page.rows)}
    response = render(templates, request, "_cards.html", context)
    if page.next_cursor:
        response.headers[NEXT_CURSOR] = page.next_cursor
    return response


@router.get(CARDS + "/{integration_id}")
async def card_fragment(
    integration_id: uuid.UUID, request: Request, db: Db, user: CurrentUser, settings: SettingsDep
) -> HTMLResponse:
    """One store's card as it is now (403 another seller's, 404 none), after a change.

    The sync is read first: each statement sees what was committed when it began, and a
    sync's orders are committed before it is done, so a card drawn while its sync ends
    never says "done" beside the order count from before (the card stops following the
    run once it says done). RLS shows no other seller's sync to this read."""
    syncs = await sync_state.read_many(db, [integration_id])
    row = await service.get_integration(db, user, integration_id)
    context = {"user": user, **await _cards(request, db, settings, [row], syncs)}
    return render(templates, request, "_cards.html", context)
