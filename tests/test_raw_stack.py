"""The benchmark's yardstick is only fair if it does the project's work: the raw stack
(benchmarks/raw_app.py), started as `make bench` starts it, answers the list with the
project's JSON, page by page, and a create with the project's shape."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from astra.auth.deps import SESSION_COOKIE
from testkit.processes import HOST, free_port, start, stop, wait_until_serving
from tests.conftest import Account, TestDatabase

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def raw_stack(
    test_database: TestDatabase, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The raw stack in its own process, on the test database, over real HTTP."""
    env = os.environ | {
        "DATABASE_URL": test_database.owner_url.render_as_string(hide_password=False),
        "ASTRA_DATA_DIR": str(test_database.settings.data_dir),
    }
    port, log_path = free_port(), tmp_path / "raw_app.log"
    command = [sys.executable, "-m", "benchmarks.raw_app", "--port", str(port)]
    process = start(command, env, log_path, cwd=ROOT)
    try:
        url = f"http://{HOST}:{port}"
        wait_until_serving(process, url, log_path, timeout=30)
        # Webhook URLs start with the host a request names: the one the project's clients use.
        async with httpx.AsyncClient(base_url=url, headers={"Host": "testserver"}) as client:
            yield client
    finally:
        stop(process, timeout=10)


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
