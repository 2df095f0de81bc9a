"""Jinja2 for every page: one environment per feature, all sharing the base templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from astra.web.assets import STATIC_PATH

BASE_TEMPLATES = Path(__file__).parent / "templates"

# Pages show who is signed in and what they own: never keep them in a shared cache.
PRIVATE = {"Cache-Control": "no-store"}


def ago(moment: datetime, now: datetime | None = None) -> str:
    """How long ago `moment` was, in the words ago() in static/js/ui.js uses."""
    minutes = ((now or datetime.now(UTC)) - moment) // timedelta(minutes=1)
    if minutes < 1:
        return "seconds ago"
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    return f"{hours} h ago" if hours < 24 else f"{hours // 24} d ago"


def iso_time(moment: datetime) -> str:
    """To the second, in UTC: the shortest `datetime` attribute the browser reads exactly."""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def page_templates(*directories: Path) -> Jinja2Templates:
    """Templates from `directories`, then the base ones (layout, macros, icons)."""
    env = Environment(
        loader=FileSystemLoader([*directories, BASE_TEMPLATES]),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["static"] = lambda path: f"{STATIC_PATH}/{path}"
    env.globals["ago"] = ago
    env.globals["iso_time"] = iso_time
    return Jinja2Templates(env=env)


def render(
    templates: Jinja2Templates,
    request: Request,
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=PRIVATE
    )
    assert isinstance(response, HTMLResponse)
    return response
