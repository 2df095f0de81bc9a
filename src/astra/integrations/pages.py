"""The /settings/integrations page: server-rendered cards from the same service as the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from astra.auth.deps import OptionalUser
from astra.db.session import Db
from astra.http import SettingsDep
from astra.integrations import service
from astra.integrations.api import to_read, webhook_base
from astra.web.redirects import login_redirect
from astra.web.templating import page_templates, render

router = APIRouter(include_in_schema=False)
templates = page_templates(Path(__file__).parent / "templates")

# The first page matches the API's default; "Show more" fetches the rest from the API.
PAGE_SIZE = 50


@router.get("/settings/integrations", response_model=None)
async def integrations_page(
    request: Request, db: Db, user: OptionalUser, settings: SettingsDep
) -> HTMLResponse | RedirectResponse:
    if user is None:
        return login_redirect(request)
    page = await service.list_integrations(db, user, limit=PAGE_SIZE, cursor=None)
    base = webhook_base(request, settings)
    context = {
        "user": user,
        "integrations": [to_read(row, base) for row in page.rows],
        "next_cursor": page.next_cursor,
        "grace_hours": settings.secret_grace_hours,
    }
    return render(templates, request, "integrations.html", context)
