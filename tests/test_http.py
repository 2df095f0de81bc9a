"""Cross-cutting HTTP behaviour: request ids, JSON logs, a database outage as a 503, body
caps and the Host names answered."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware.trustedhost import TrustedHostMiddleware

from astra.http import TOO_LARGE, TrustedHosts
from astra.logs import JsonFormatter
from astra.settings import Settings
from tests.conftest import PASSWORD, Account, TestDatabase, client_for, running


@pytest.fixture
async def app_without_database(test_database: TestDatabase) -> AsyncIterator[FastAPI]:
    # Port 1 on loopback: nothing listens, connections are refused at once.
    dead = "postgresql://astra@127.0.0.1:1/astra"
    settings = test_database.settings.model_copy(update={"database_url": dead})
    async with running(settings) as application:
        yield application


async def test_database_outage_is_a_503_with_retry_after(app_without_database: FastAPI) -> None:
    async with client_for(app_without_database) as client:
        response = await client.post(
            "/api/auth/login", json={"email": "a@example.com", "password": "whatever1"}
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "detail": "The database is unavailable right now. Try again in a few seconds."
    }


async def test_every_response_carries_a_request_id(anonymous: httpx.AsyncClient) -> None:
    first = await anonymous.get("/api/integrations")
    second = await anonymous.get("/api/integrations")
    assert first.status_code == 401
    assert len(first.headers["x-request-id"]) == 16
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_sane_incoming_request_id_is_kept_and_a_hostile_one_replaced(
    anonymous: httpx.AsyncClient,
) -> None:
    kept = await anonymous.get("/api/integrations", headers={"x-request-id": "abc-123"})
    replaced = await anonymous.get("/api/integrations", headers={"x-request-id": "a\nb c"})
    assert kept.headers["x-request-id"] == "abc-123"
    assert replaced.headers["x-request-id"] not in ("a\nb c", "")


async def test_access_log_lines_are_json_with_the_request_id_and_no_secrets(
    seller: Account, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="astra"):
        created = await seller.client.post(
            "/api/integrations",
            json={"name": "Logged", "type": "woocommerce", "domain": "logged.example.com"},
        )
        await seller.client.post(
            "/api/auth/login", json={"email": seller.email, "password": PASSWORD}
        )
    secret = created.json()["webhook_secret"]
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(record)) for record in caplog.records]
    access = [line for line in lines if line["logger"] == "astra.access"]
    assert {"method": "POST", "path": "/api/integrations", "status": 201}.items() <= access[
        0
    ].items()
    assert access[0]["request_id"] == created.headers["x-request-id"]
    text = "\n".join(formatter.format(record) for record in caplog.records)
    assert secret not in text
    assert PASSWORD not in text


# --- body caps -------------------------------------------------------------------------

API_CAP = Settings().max_body_bytes


async def test_an_api_body_over_the_cap_is_413_by_its_length_or_while_streaming(
    anonymous: httpx.AsyncClient,
) -> None:
    padded = {"email": "a@example.com", "password": "x" * API_CAP}

    declared = await anonymous.post("/api/auth/login", json=padded)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(API_CAP // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    streamed = await anonymous.post(
        "/api/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    for response in (declared, streamed):
        assert (response.status_code, response.json()) == (413, {"detail": TOO_LARGE})
    # A body within the cap is read and judged as usual (that password is too long).
    within = await anonymous.post(
        "/api/auth/login", json={"email": "a@example.com", "password": "x" * (API_CAP // 2)}
    )
    assert within.status_code == 422


async def test_the_webhook_route_keeps_its_larger_cap(anonymous: httpx.AsyncClient) -> None:
    # Past the API's cap, within the webhook's: read, then refused for its signature.
    body = b"{" + b" " * (API_CAP * 4) + b"}"
    response = await anonymous.post(
        f"/api/webhooks/order?id={uuid.uuid4()}",
        content=body,
        headers={"content-type": "application/json", "x-shopify-hmac-sha256": "AAAA"},
    )
    assert response.status_code == 404


# --- Host names ------------------------------------------------------------------------


async def test_a_foreign_host_gets_400_and_builds_no_url(
    seller: Account, owner_engine: AsyncEngine
) -> None:
    evil = {"host": "evil.test"}

    created = await seller.client.post(
        "/api/integrations",
        json={"name": "Shop", "type": "woocommerce", "domain": "shop.example.com"},
        headers=evil,
    )
    redirect = await seller.client.get("/api/integrations/", headers=evil)

    for response in (created, redirect):
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "evil.test" not in response.text
    async with owner_engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM public.integrations")) == 0
    # The same requests under a name the app answers.
    assert (await seller.client.get("/api/integrations/")).status_code == 307


async def test_by_default_the_public_url_and_loopback_names_are_answered(
    test_database: TestDatabase,
) -> None:
    settings = test_database.settings.model_copy(
        update={"allowed_hosts": None, "public_url": "https://astra.example.com"}
    )
    async with running(settings) as application, client_for(application) as client:
        statuses = {
            host: (await client.get("/api/auth/me", headers={"host": host})).status_code
            for host in ("astra.example.com", "127.0.0.1:8000", "localhost", "evil.test", "")
        }
    assert statuses == {
        "astra.example.com": 401,
        "127.0.0.1:8000": 401,
        "localhost": 401,
        "evil.test": 400,
        "": 400,
    }


@pytest.mark.parametrize(
    ("env", "hosts"),
    [
        ({}, ["localhost", "127.0.0.1"]),
        ({"ASTRA_HOST": "0.0.0.0"}, ["localhost", "127.0.0.1"]),  # noqa: S104
        ({"ASTRA_HOST": "10.0.0.5"}, ["localhost", "127.0.0.1", "10.0.0.5"]),
        (
            {"ASTRA_PUBLIC_URL": "https://Astra.Example.com/base/"},
            ["localhost", "127.0.0.1", "astra.example.com"],
        ),
        ({"ASTRA_ALLOWED_HOSTS": " a.example , *.b.example "}, ["a.example", "*.b.example"]),
        ({"ASTRA_ALLOWED_HOSTS": ""}, ["localhost", "127.0.0.1"]),
    ],
)
def test_the_hosts_answered_come_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], hosts: list[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().trusted_hosts == hosts


def test_trusted_proxies_are_none_unless_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().trusted_proxies == []
    monkeypatch.setenv("ASTRA_TRUSTED_PROXIES", "10.0.0.1, 10.0.1.0/24")
    assert Settings().trusted_proxies == ["10.0.0.1", "10.0.1.0/24"]


HOST_SPELLINGS: list[list[bytes]] = [
    [b"localhost"],
    [b"LOCALHOST"],
    [b"localhost:8000"],
    [b"localhost:"],
    [b"localhost:80a"],
    [b"localhost:\xd9\xa3"],
    [b"localhost:8000:1"],
    [b"localhost/evil"],
    [b"localhost "],
    [b"127.0.0.1:8100"],
    [b"a.example"],
    [b"x.b.example:443"],
    [b"b.example"],
    [b"evil.test"],
    [b""],
    [b"[::1]"],
    [b"[::1]:8000"],
    [b"localhost", b"evil.test"],
    [b"evil.test", b"localhost"],
    [],
]


@pytest.mark.parametrize("hosts", HOST_SPELLINGS)
async def test_the_host_shortcut_lets_in_exactly_what_starlette_does(hosts: list[bytes]) -> None:
    """TrustedHosts answers every Host header as Starlette's TrustedHostMiddleware does."""
    allowed = ["localhost", "127.0.0.1", "a.example", "*.b.example", "[::1]"]

    async def inner(scope: object, receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def answer(app: Any) -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": [(b"host", host) for host in hosts],
        }
        await app(scope, None, send)
        return sent[0]["status"], sent[1]["body"]

    ours = await answer(TrustedHosts(inner, allowed_hosts=allowed, www_redirect=False))
    theirs = await answer(TrustedHostMiddleware(inner, allowed_hosts=allowed, www_redirect=False))
    assert ours == theirs
