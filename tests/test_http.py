"""Cross-cutting HTTP behaviour: request ids, JSON logs, and a database outage as a 503."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from astra.logs import JsonFormatter
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
