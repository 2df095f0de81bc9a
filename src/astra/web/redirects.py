"""Where to send a browser before and after signing in."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse

HOME = "/settings/integrations"
LOGIN = "/login"
_MAX_NEXT = 2000


def safe_next(value: str | None) -> str:
    """`value` if it is a path on this site, else HOME: never an open redirect.

    Rejects absolute and scheme-relative URLs, and backslashes and control characters,
    which browsers may read as "//" and so as another host.
    """
    if not value or len(value) > _MAX_NEXT or not value.startswith("/"):
        return HOME
    if (
        value.startswith("//")
        or "\\" in value
        or any(ord(ch) < 0x20 or ch == "\x7f" for ch in value)
    ):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    return value


def login_redirect(request: Request) -> RedirectResponse:
    """Send a signed-out browser to the sign-in page, remembering where it was going."""
    target = request.url.path
    if request.url.query:
        target = f"{target}?{request.url.query}"
    return RedirectResponse(f"{LOGIN}?next={quote(target, safe='/')}", status_code=303)
