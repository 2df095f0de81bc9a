"""The benchmark's yardstick is only fair if it does the project's work: the raw stack
(benchmarks/raw_app.py) answers the list with the project's JSON, page by page, and a
create with the project's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from astra.auth.deps import SESSION_COOKIE
from benchmarks import raw_app
from tests.conftest import Account, TestDatabase, client_for


@pytest.fixture
async def raw_stack(test_database: TestDatabase) -> AsyncIterator[httpx.AsyncClient]:
    url = raw_app.database_url(test_database.settings)
    raw_app.pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        async with client_for(raw_app.app) as client:
            yield client
    finally:
        await raw_app.pool.close()
        raw_app.pool = None


def session_of(account: Account) -> dict[str, str]:
    """The account's session cookie, to send from another client."""
    return {"Cookie": f"{SESSION_COOKIE}={account.client.cookies[SESSION_COOKIE]}"}


async def pages(client: httpx.AsyncClient, headers: dict[str, str]) -> list[object]:
    """Every page of the list, two stores a page."""
    found, cursor = [], None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/integrations", params=params, headers=headers)
        assert response.status_code == 200, response.text
        found.append(response.json())
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found


async def test_the_raw_list_is_the_projects_list(
    raw_stack: httpx.AsyncClient, seller: Account, other_seller: Account, admin: Account
) -> None:
    for n, account in enumerate([seller, seller, seller, other_seller]):
        created = await account.client.post(
            "/api/integrations",
            json={"name": f"Store {n}", "type": "shopify", "domain": f"s{n}.myshopify.com"},
        )
        assert created.status_code == 201
    for account, stores in ((seller, 3), (admin, 4)):
        project = await pages(account.client, {})
        assert sum(len(page["items"]) for page in project) == stores  # type: ignore[index]
        assert await pages(raw_stack, session_of(account)) == project


async def test_the_raw_create_has_the_projects_shape(
    raw_stack: httpx.AsyncClient, seller: Account
) -> None:
    fields = {"name": "Store", "type": "woocommerce"}
    project = await seller.client.post(
        "/api/integrations", json=fields | {"domain": "project.example.com"}
    )
    raw = await raw_stack.post(
        "/api/integrations",
        json=fields | {"domain": "raw.example.com"},
        headers=session_of(seller),
    )
    assert (project.status_code, raw.status_code) == (201, 201)
    assert set(raw.json()) == set(project.json())
