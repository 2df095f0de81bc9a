"""Security headers on every response the app sends: pages, API, static files, errors."""

from __future__ import annotations

import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from astra.web.security import SecurityHeaders
from tests.conftest import Account


def assert_secure(response: httpx.Response) -> None:
    headers = response.headers
    policy = {
        name: values
        for name, _, values in (
            directive.strip().partition(" ")
            for directive in headers["content-security-policy"].split(";")
        )
    }
    assert policy["script-src"] == "'self'"
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "unsafe-eval" not in headers["content-security-policy"]
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    # HTML from strings only through the one named policy static/js/ui.js creates: not twice
    # (no 'allow-duplicates'), and no "default" policy for the other sinks.
    assert policy["require-trusted-types-for"] == "'script'"
    assert policy["trusted-types"] == "astra-fragment"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] in {"same-origin", "no-referrer", "strict-origin"}
    assert headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/login", 200),
        ("GET", "/settings/integrations", 303),
        ("GET", f"/settings/integrations/cards/{uuid.uuid4()}", 401),
        ("GET", "/", 303),
        ("GET", "/setup?token=wrong", 403),
        ("GET", "/api/integrations", 401),
        ("GET", "/api/auth/me", 401),
        ("POST", "/api/auth/login", 422),
        ("GET", "/static/astra.css", 200),
        ("GET", "/static/js/integrations.js", 200),
        ("GET", "/static/favicon.svg", 200),
        ("GET", "/static/missing.js", 404),
        ("GET", "/no/such/page", 404),
        ("POST", "/api/webhooks/order?id=not-a-uuid", 404),
    ],
)
async def test_every_response_carries_the_headers(
    anonymous: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await anonymous.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == status
    assert_secure(response)
    # API answers (errors included) are never cached; static files are revalidated.
    if path.startswith("/api/"):
        assert response.headers["cache-control"] == "no-store"


async def test_signed_in_page_and_api_carry_the_headers(seller: Account) -> None:
    page = await seller.client.get("/settings/integrations")
    assert page.status_code == 200
    assert_secure(page)
    assert page.headers["cache-control"] == "no-store"
    for path in ("/api/integrations", "/api/auth/me", "/api/orders"):
        api = await seller.client.get(path)
        assert api.status_code == 200
        assert_secure(api)
        assert api.headers["cache-control"] == "no-store"
    created = await seller.client.post(
        "/api/integrations", json={"name": "S", "type": "shopify", "domain": "s.myshopify.com"}
    )
    fragment = await seller.client.get(f"/settings/integrations/cards/{created.json()['id']}")
    assert fragment.status_code == 200
    assert_secure(fragment)
    assert fragment.headers["cache-control"] == "no-store"


async def test_an_unhandled_error_is_a_500_with_the_headers() -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    app = Starlette(routes=[Route("/boom", boom)], middleware=[Middleware(SecurityHeaders)])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert_secure(response)


async def test_a_route_may_set_its_own_header() -> None:
    async def framed(request: Request) -> Response:
        return Response("ok", headers={"Referrer-Policy": "no-referrer"})

    app = Starlette(routes=[Route("/", framed)], middleware=[Middleware(SecurityHeaders)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
