"""The sign-in and first-run pages. Their forms post to the JSON auth API with fetch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import text

from astra.auth.deps import OptionalUser
from astra.auth.passwords import MIN_PASSWORD_LENGTH
from astra.auth.service import check_setup_token
from astra.db.session import Db
from astra.errors import Forbidden
from astra.http import SettingsDep
from astra.web.redirects import HOME, safe_next
from astra.web.templating import page_templates, render

router = APIRouter(include_in_schema=False)
templates = page_templates()


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get("/login", response_model=None)
async def login_page(
    request: Request,
    user: OptionalUser,
    next_path: Annotated[str | None, Query(alias="next", max_length=2000)] = None,
) -> HTMLResponse | RedirectResponse:
    destination = safe_next(next_path)
    if user is not None:
        return RedirectResponse(destination, status_code=303)
    return render(templates, request, "login.html", {"next": destination})


USER_COUNT = text("SELECT public.app_user_count()")


@router.get("/setup")
async def setup_page(
    request: Request,
    settings: SettingsDep,
    db: Db,
    token: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """The form behind the one-time link `astra serve` prints when there are no accounts;
    once the first account exists, the same link says so and points to sign-in."""
    context = {"token": "", "problem": None, "set_up": False, "min_password": MIN_PASSWORD_LENGTH}
    try:
        check_setup_token(settings.setup_token, token)
    except Forbidden as exc:
        problem = context | {"problem": exc.detail}
        return render(templates, request, "setup.html", problem, status_code=403)
    if (await db.execute(USER_COUNT)).scalar_one():
        return render(templates, request, "setup.html", context | {"set_up": True})
    return render(templates, request, "setup.html", context | {"token": token})
