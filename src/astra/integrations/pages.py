"""The /settings/integrations page, and the card fragments its script fetches: all drawn by
`_card.html`, from the same service calls (and so the same access rule) as the API."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from astra.auth.deps import CurrentUser, OptionalUser
from astra.db.session import Db
from astra.http import SettingsDep
from astra.integrations import service
from astra.integrations.api import to_read, webhook_base
from astra.integrations.schemas import IntegrationRead
from astra.integrations.service import IntegrationRow
from astra.settings import Settings
from astra.web.redirects import login_redirect
from astra.web.templating import page_templates, render

router = APIRouter(include_in_schema=False)
templates = page_templates(Path(__file__).parent / "templates")

# The first page matches the API's default; "Show more" fetches the next ones as fragments.
PAGE_SIZE = 50
CARDS = "/settings/integrations/cards"
# Where a page of cards says which page follows (absent on the last one).
NEXT_CURSOR = "Astra-Next-Cursor"


def _cards(
    request: Request, settings: Settings, rows: list[IntegrationRow]
) -> list[IntegrationRead]:
    base = webhook_base(request, settings)
    return [to_read(row, base) for row in rows]


@router.get("/settings/integrations", response_model=None)
async def integrations_page(
    request: Request, db: Db, user: OptionalUser, settings: SettingsDep
) -> HTMLResponse | RedirectResponse:
    if user is None:
        return login_redirect(request)
    page = await service.list_integrations(db, user, limit=PAGE_SIZE, cursor=None)
    context = {
        "user": user,
        "integrations": _cards(request, settings, page.rows),
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
    context = {"user": user, "integrations": _cards(request, settings, page.rows)}
    response = render(templates, request, "_cards.html", context)
    if page.next_cursor:
        response.headers[NEXT_CURSOR] = page.next_cursor
    return response


@router.get(CARDS + "/{integration_id}")
async def card_fragment(
    integration_id: uuid.UUID, request: Request, db: Db, user: CurrentUser, settings: SettingsDep
) -> HTMLResponse:
    """One store's card as it is now (403 another seller's, 404 none), after a change."""
    row = await service.get_integration(db, user, integration_id)
    context = {"user": user, "integrations": _cards(request, settings, [row])}
    return render(templates, request, "_cards.html", context)
