"""Browser security headers on every response the app sends, pages and API alike."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Scripts, styles and everything else come only from this app: no inline script or style,
# no CDN, no framing. Trusted Types make any `innerHTML = string` in our JS throw, so user
# text can only reach the page through textContent and attribute setters. The one policy
# allowed, created once by static/js/ui.js, parses only the server's own card fragments
# (autoescaped templates, fetched from this origin).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types astra-fragment",
    )
)

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)

_FALLBACK_500 = b"Internal Server Error"
# API answers carry people's emails, stores and orders: no browser or shared cache keeps
# them (nothing under /api/ is meant to be cached). Pages set it themselves (PRIVATE).
API_PREFIX = "/api/"
# As they go on the wire, for pages and for API answers.
_PAGE_HEADERS = tuple(
    (n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in SECURITY_HEADERS
)
_API_HEADERS = (*_PAGE_HEADERS, (b"cache-control", b"no-store"))


class SecurityHeaders:
    """Pure ASGI middleware: add the headers as the response starts, without buffering it.

    Starlette's ServerErrorMiddleware sits outside every user middleware, so its 500 would
    go out bare. When the app raises before responding, this sends the 500 itself, with
    the headers, and re-raises so the error is still logged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        ours = _API_HEADERS if scope["path"].startswith(API_PREFIX) else _PAGE_HEADERS

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # Each one the response does not set itself, in its spelling of the name.
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in ours if pair[0] not in present)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(_FALLBACK_500)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _FALLBACK_500})
            raise
