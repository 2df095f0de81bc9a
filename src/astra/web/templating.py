"""Jinja2 for every page: one environment per feature, all sharing the base templates."""

from __future__ import annotations

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


def page_templates(*directories: Path) -> Jinja2Templates:
    """Templates from `directories`, then the base ones (layout, macros, platform marks)."""
    env = Environment(
        loader=FileSystemLoader([*directories, BASE_TEMPLATES]),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["static"] = lambda path: f"{STATIC_PATH}/{path}"
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
