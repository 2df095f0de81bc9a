"""Sign-in over the JSON API: login, logout, /me, session expiry, the cross-site guard
and the one-time set-up link. Runs on the migrated schema."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import PASSWORD, Account, TestDatabase, client_for, make_user, running

COOKIE = "astra_session"
STORE = {"name": "Corner Shop", "type": "woocommerce", "domain": "corner.example.com"}
NOT_SIGNED_IN = {"detail": "Sign in to continue."}
BAD_CREDENTIALS = {"detail": "Incorrect email or password."}
CROSS_SITE = {"detail": "Cross-site request refused."}
BAD_SETUP_LINK = {"detail": "This set-up link is not valid. Use the link printed by `astra serve`."}
ALREADY_SET_UP = {"detail": "Astra is already set up. Sign in instead."}
SETUP_TOKEN = "one-time-setup-token-for-tests"
FOURTEEN_DAYS = 14 * 24 * 3600


def session_cookie(response: httpx.Response) -> dict[str, str]:
    """The attributes of the response's session Set-Cookie, keys lowercased."""
    [header] = [
        value for value in response.headers.get_list("set-cookie") if value.startswith(COOKIE)
    ]
    first, *attributes = (part.strip() for part in header.split(";"))
    cookie = {"value": first.partition("=")[2]}
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        cookie[key.lower()] = value
    return cookie


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def sessions_of(owner_engine: AsyncEngine, user_id: uuid.UUID) -> list[bytes]:
    async with owner_engine.connect() as connection:
        result = await connection.execute(
            text("SELECT token_hash FROM public.sessions WHERE user_id = :id"), {"id": user_id}
        )
        return [bytes(row[0]) for row in result]


async def users(owner_engine: AsyncEngine) -> list[tuple[str, str]]:
    async with owner_engine.connect() as connection:
        result = await connection.execute(
            text("SELECT email, role FROM public.users ORDER BY email")
        )
        return [(row.email, row.role) for row in result]


async def integrations(owner_engine: AsyncEngine) -> list[dict[str, Any]]:
    async with owner_engine.connect() as connection:
        result = await connection.execute(text("SELECT * FROM public.integrations ORDER BY id"))
        return [dict(row) for row in result.mappings()]


@pytest.fixture
async def user_id(owner_engine: AsyncEngine, password_hash: str) -> uuid.UUID:
    """A seller who has not signed in yet."""
    return await make_user(owner_engine, "shopkeeper@example.com", "seller", password_hash)


# --- login -----------------------------------------------------------------------------


async def test_login_returns_the_user_and_an_httponly_lax_cookie(
    anonymous: httpx.AsyncClient, user_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    response = await login(anonymous, "shopkeeper@example.com")

    assert response.status_code == 200
    assert response.json() == {
        "id": str(user_id),
        "email": "shopkeeper@example.com",
        "role": "seller",
    }
    cookie = session_cookie(response)
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(FOURTEEN_DAYS)
    assert "secure" not in cookie
    assert len(cookie["value"]) >= 40
    # Only the token's SHA-256 is stored.
    assert await sessions_of(owner_engine, user_id) == [
        hashlib.sha256(cookie["value"].encode()).digest()
    ]
    me = await anonymous.get("/api/auth/me")
    assert (me.status_code, me.json()["id"]) == (200, str(user_id))


@pytest.mark.parametrize(
    ("public_url", "secure"),
    [(None, False), ("http://astra.example.com", False), ("https://astra.example.com", True)],
)
async def test_cookie_is_secure_only_behind_an_https_public_url(
    test_database: TestDatabase, user_id: uuid.UUID, public_url: str | None, secure: bool
) -> None:
    settings = test_database.settings.model_copy(update={"public_url": public_url})
    async with (
        running(settings) as application,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="https://testserver"
        ) as client,
    ):
        response = await login(client, "shopkeeper@example.com")
        assert response.status_code == 200
        cookie = session_cookie(response)
        assert ("secure" in cookie) is secure
        assert "httponly" in cookie
        assert (await client.get("/api/auth/me")).status_code == 200


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("shopkeeper@example.com", "wrong password"),
        ("shopkeeper@example.com", PASSWORD.upper()),
        ("shopkeeper@example.com", PASSWORD + " "),
        ("nobody@example.com", PASSWORD),
        ("nobody@example.com", "wrong password"),
    ],
)
async def test_bad_credentials_get_one_and_the_same_401(
    anonymous: httpx.AsyncClient,
    user_id: uuid.UUID,
    owner_engine: AsyncEngine,
    email: str,
    password: str,
) -> None:
    response = await login(anonymous, email, password)

    assert (response.status_code, response.json()) == (401, BAD_CREDENTIALS)
    assert "set-cookie" not in response.headers
    assert await sessions_of(owner_engine, user_id) == []
    assert (await anonymous.get("/api/auth/me")).status_code == 401


@pytest.mark.parametrize(
    "email", ["SHOPKEEPER@EXAMPLE.COM", "Shopkeeper@Example.com", "  shopkeeper@example.com "]
)
async def test_email_is_case_insensitive(
    anonymous: httpx.AsyncClient, user_id: uuid.UUID, email: str
) -> None:
    response = await login(anonymous, email)
    assert response.status_code == 200
    assert response.json()["email"] == "shopkeeper@example.com"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"password": PASSWORD}, ["body", "email"]),
        ({"email": "shopkeeper@example.com"}, ["body", "password"]),
        ({"email": "not-an-email", "password": PASSWORD}, ["body", "email"]),
        ({"email": "shop\x00keeper@example.com", "password": PASSWORD}, ["body", "email"]),
        ({"email": "shopkeeper@example.com", "password": ""}, ["body", "password"]),
        ({"email": "shopkeeper@example.com", "password": 12345678}, ["body", "password"]),
        (
            {"email": "shopkeeper@example.com", "password": PASSWORD, "role": "admin"},
            ["body", "role"],
        ),
    ],
)
async def test_login_rejects_malformed_input(
    anonymous: httpx.AsyncClient, user_id: uuid.UUID, body: dict[str, Any], loc: list[str]
) -> None:
    response = await anonymous.post("/api/auth/login", json=body)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [loc]
    assert "set-cookie" not in response.headers


async def test_every_login_issues_a_fresh_session(
    app: FastAPI, user_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    # A session id planted before sign-in (session fixation) is never adopted.
    planted = "planted-by-someone-else-" + "x" * 20
    async with client_for(app) as first, client_for(app) as second:
        first.cookies.set(COOKIE, planted)
        first_cookie = session_cookie(await login(first, "shopkeeper@example.com"))["value"]
        second_cookie = session_cookie(await login(second, "shopkeeper@example.com"))["value"]

        assert len({planted, first_cookie, second_cookie}) == 3
        assert len(await sessions_of(owner_engine, user_id)) == 2
        for client in (first, second):
            assert (await client.get("/api/auth/me")).status_code == 200


# --- /me -------------------------------------------------------------------------------


async def test_me_for_each_role(seller: Account, other_seller: Account, admin: Account) -> None:
    for account in (seller, other_seller, admin):
        response = await account.client.get("/api/auth/me")
        assert response.status_code == 200
        assert response.json() == {
            "id": str(account.id),
            "email": account.email,
            "role": account.role,
        }


async def test_me_anonymous_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/auth/me")
    assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN)
    anonymous.cookies.set(COOKIE, "not-a-session")
    response = await anonymous.get("/api/auth/me")
    assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN)


# --- logout and expiry -----------------------------------------------------------------


async def test_logout_ends_the_session_on_the_server(
    app: FastAPI, seller: Account, owner_engine: AsyncEngine
) -> None:
    token = seller.client.cookies[COOKIE]
    async with client_for(app) as elsewhere:
        assert (await login(elsewhere, seller.email)).status_code == 200
        assert len(await sessions_of(owner_engine, seller.id)) == 2

        response = await seller.client.post("/api/auth/logout")

        assert response.status_code == 204
        assert response.content == b""
        cleared = session_cookie(response)
        assert cleared["value"] in {"", '""'}
        assert cleared["max-age"] == "0"
        assert await sessions_of(owner_engine, seller.id) == [
            hashlib.sha256(elsewhere.cookies[COOKIE].encode()).digest()
        ]
        # Signing out one browser leaves the others signed in.
        assert (await elsewhere.get("/api/auth/me")).status_code == 200

    async with client_for(app) as replay:
        replay.cookies.set(COOKIE, token)
        for method, path in [("GET", "/api/auth/me"), ("GET", "/api/integrations")]:
            response = await replay.request(method, path)
            assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN), path
        response = await replay.post("/api/integrations", json=STORE)
        assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN)
        response = await replay.post("/api/auth/logout")
        assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN)
    assert await integrations(owner_engine) == []


async def test_logout_when_signed_out_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/api/auth/logout")
    assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN)


async def test_expired_session_is_refused(
    seller: Account, admin: Account, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE public.sessions SET expires_at = now() - interval '1 second' "
                "WHERE user_id = :id"
            ),
            {"id": seller.id},
        )

    for path in ("/api/auth/me", "/api/integrations"):
        response = await seller.client.get(path)
        assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN), path
    response = await seller.client.post("/api/integrations", json=STORE)
    assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN)
    assert await integrations(owner_engine) == []
    # Other people's sessions are untouched.
    assert (await admin.client.get("/api/auth/me")).status_code == 200

    # Signing in again works, and clears the expired session away.
    response = await login(seller.client, seller.email)
    assert response.status_code == 200
    assert await sessions_of(owner_engine, seller.id) == [
        hashlib.sha256(session_cookie(response)["value"].encode()).digest()
    ]


# --- cross-site guard ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "http://testserver:8080"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
    ],
)
async def test_cross_site_writes_with_the_cookie_are_refused(
    seller: Account, owner_engine: AsyncEngine, headers: dict[str, str]
) -> None:
    created = await seller.client.post("/api/integrations", json=STORE)
    assert created.status_code == 201
    path = f"/api/integrations/{created.json()['id']}"
    before = await integrations(owner_engine)

    for method, url, body in [
        ("POST", "/api/integrations", STORE | {"domain": "evil.example.com"}),
        ("PUT", path, {"name": "Defaced"}),
        ("DELETE", path, None),
        ("POST", f"{path}/secret", None),
        ("POST", "/api/auth/logout", None),
    ]:
        response = await seller.client.request(method, url, json=body, headers=headers)
        assert (response.status_code, response.json()) == (403, CROSS_SITE), (method, url)

    # Nothing changed, and the session survived the forged logout.
    assert await integrations(owner_engine) == before
    read = await seller.client.get(path, headers=headers)
    assert (read.status_code, read.json()["name"]) == (200, STORE["name"])
    assert len(await sessions_of(owner_engine, seller.id)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "http://testserver"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
    ],
)
async def test_same_origin_and_non_browser_writes_pass(
    seller: Account, headers: dict[str, str]
) -> None:
    response = await seller.client.post("/api/integrations", json=STORE, headers=headers)
    assert response.status_code == 201
    path = f"/api/integrations/{response.json()['id']}"
    response = await seller.client.put(path, json={"name": "Renamed"}, headers=headers)
    assert (response.status_code, response.json()["name"]) == (200, "Renamed")
    assert (await seller.client.delete(path, headers=headers)).status_code == 204


@pytest.mark.parametrize(
    "cookie_headers",
    [
        # The guard once kept the last Cookie header; the session reader reads them all.
        lambda token: [("cookie", f"{COOKIE}={token}"), ("cookie", "theme=dark")],
        # ... and once looked for "astra_session=", which the reader's parser also finds here.
        lambda token: [("cookie", f"{COOKIE} ={token}")],
    ],
    ids=["second-cookie-header", "space-after-the-name"],
)
async def test_the_guard_reads_the_cookie_as_the_session_reader_does(
    seller: Account,
    anonymous: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    cookie_headers: Any,
) -> None:
    headers = cookie_headers(seller.client.cookies[COOKIE])

    forged = await anonymous.post(
        "/api/integrations", json=STORE, headers=[*headers, ("sec-fetch-site", "cross-site")]
    )

    assert (forged.status_code, forged.json()) == (403, CROSS_SITE)
    assert await integrations(owner_engine) == []
    # The same cookie from this site signs the seller in: it is a session cookie to both.
    own = await anonymous.post("/api/integrations", json=STORE, headers=headers)
    assert own.status_code == 201
    assert own.json()["user_id"] == str(seller.id)


async def test_without_the_cookie_the_guard_steps_aside_for_auth(
    anonymous: httpx.AsyncClient, user_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    cross_site = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}

    response = await anonymous.post("/api/integrations", json=STORE, headers=cross_site)

    assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN)
    assert await integrations(owner_engine) == []
    # A cookie-less sign-in is not an ambient-credential write, so it is not blocked.
    response = await anonymous.post(
        "/api/auth/login",
        json={"email": "shopkeeper@example.com", "password": PASSWORD},
        headers=cross_site,
    )
    assert response.status_code == 200


# --- first-run set-up link -------------------------------------------------------------


@asynccontextmanager
async def setup_client(
    test_database: TestDatabase, token: str | None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = test_database.settings.model_copy(update={"setup_token": token})
    async with (
        running(settings) as application,
        client_for(application) as client,
    ):
        yield client


def setup_body(token: str = SETUP_TOKEN, **fields: str) -> dict[str, str]:
    return {"token": token, "email": "Founder@Example.com", "password": PASSWORD, **fields}


async def test_setup_creates_the_first_admin_and_signs_in(
    test_database: TestDatabase, owner_engine: AsyncEngine, anonymous: httpx.AsyncClient
) -> None:
    async with setup_client(test_database, SETUP_TOKEN) as client:
        response = await client.post("/api/auth/setup", json=setup_body())

        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"id", "email", "role"}
        assert (body["email"], body["role"]) == ("founder@example.com", "admin")
        assert "httponly" in session_cookie(response)
        me = await client.get("/api/auth/me")
        assert me.json() == body
        assert await users(owner_engine) == [("founder@example.com", "admin")]

        # The link works once: the next attempt finds Astra already set up.
        again = await client.post("/api/auth/setup", json=setup_body(email="second@example.com"))
        assert (again.status_code, again.json()) == (409, ALREADY_SET_UP)
        assert await users(owner_engine) == [("founder@example.com", "admin")]

    # The new admin signs in like anyone else afterwards.
    response = await login(anonymous, "founder@example.com")
    assert (response.status_code, response.json()["role"]) == (200, "admin")


@pytest.mark.parametrize(
    "token", ["wrong-token", SETUP_TOKEN + "x", SETUP_TOKEN[:-1], SETUP_TOKEN.upper()]
)
async def test_setup_with_a_wrong_token_is_403(
    test_database: TestDatabase, owner_engine: AsyncEngine, token: str
) -> None:
    async with setup_client(test_database, SETUP_TOKEN) as client:
        response = await client.post("/api/auth/setup", json=setup_body(token))
    assert (response.status_code, response.json()) == (403, BAD_SETUP_LINK)
    assert "set-cookie" not in response.headers
    assert await users(owner_engine) == []


async def test_setup_without_a_configured_token_is_403(
    test_database: TestDatabase, owner_engine: AsyncEngine
) -> None:
    async with setup_client(test_database, None) as client:
        for token in (SETUP_TOKEN, "None", "null"):
            response = await client.post("/api/auth/setup", json=setup_body(token))
            assert (response.status_code, response.json()) == (403, BAD_SETUP_LINK)
    assert await users(owner_engine) == []


async def test_setup_when_an_account_exists_is_409(
    test_database: TestDatabase, owner_engine: AsyncEngine, seller: Account
) -> None:
    async with setup_client(test_database, SETUP_TOKEN) as client:
        response = await client.post("/api/auth/setup", json=setup_body())
    assert (response.status_code, response.json()) == (409, ALREADY_SET_UP)
    assert "set-cookie" not in response.headers
    assert await users(owner_engine) == [(seller.email, "seller")]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"password": "short"}, "password"),
        ({"email": "not-an-email"}, "email"),
        ({"token": ""}, "token"),
        ({"role": "seller"}, "role"),
    ],
)
async def test_setup_rejects_malformed_input(
    test_database: TestDatabase, owner_engine: AsyncEngine, fields: dict[str, str], loc: str
) -> None:
    async with setup_client(test_database, SETUP_TOKEN) as client:
        response = await client.post("/api/auth/setup", json=setup_body(**fields))
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", loc]]
    assert await users(owner_engine) == []


# --- OpenAPI ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/auth/login", "post", {"200", "400", "401", "422", "429"}),
        ("/api/auth/logout", "post", {"204", "401"}),
        ("/api/auth/me", "get", {"200", "401"}),
        ("/api/auth/setup", "post", {"201", "400", "403", "409", "422", "429"}),
    ],
)
async def test_openapi_lists_the_auth_statuses(
    anonymous: httpx.AsyncClient, path: str, method: str, statuses: set[str]
) -> None:
    document = (await anonymous.get("/openapi.json")).json()
    assert set(document["paths"][path][method]["responses"]) == statuses
