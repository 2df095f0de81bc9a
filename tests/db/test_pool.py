"""The pool and the request transaction: no user context survives a request, and the
database's unique constraint alone settles concurrent creates of one store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.session import begin
from testkit.processes import free_port
from tests.conftest import PASSWORD, Account, TestDatabase, client_for, make_user, running


@pytest.fixture
async def single_connection_app(test_database: TestDatabase) -> AsyncIterator[FastAPI]:
    settings = test_database.settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    async with running(settings) as application:
        yield application


async def sign_in(
    app: FastAPI, owner_engine: AsyncEngine, email: str, password_hash: str
) -> Account:
    user_id = await make_user(owner_engine, email, "seller", password_hash)
    client = client_for(app)
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200
    return Account(id=user_id, email=email, role="seller", client=client)


async def test_interleaved_users_on_one_connection_never_see_each_other(
    single_connection_app: FastAPI, owner_engine: AsyncEngine, password_hash: str
) -> None:
    alice = await sign_in(single_connection_app, owner_engine, "alice@example.com", password_hash)
    bob = await sign_in(single_connection_app, owner_engine, "bob@example.com", password_hash)
    anonymous = client_for(single_connection_app)
    for account, count in ((alice, 3), (bob, 2)):
        for n in range(count):
            response = await account.client.post(
                "/api/integrations",
                json={
                    "name": f"{account.email} {n}",
                    "type": "woocommerce",
                    "domain": f"{n}.{account.email.split('@')[0]}.example.com",
                },
            )
            assert response.status_code == 201

    async def list_as(account: Account | None) -> tuple[Account | None, httpx.Response]:
        client = account.client if account else anonymous
        return account, await client.get("/api/integrations")

    callers = list(itertools.islice(itertools.cycle([alice, None, bob]), 60))
    results = await asyncio.gather(*(list_as(caller) for caller in callers))
    for account, response in results:
        if account is None:
            assert response.status_code == 401
            continue
        owners = {item["user_id"] for item in response.json()["items"]}
        assert owners == {str(account.id)}
        assert len(response.json()["items"]) == (3 if account is alice else 2)

    # The one pooled connection, handed out again outside any request, carries no user.
    database = single_connection_app.state.db
    async with begin(database) as db:
        claims = (
            await db.execute(text("SELECT current_setting('request.jwt.claims', true)"))
        ).scalar()
        visible = (await db.execute(text("SELECT count(*) FROM integrations"))).scalar()
    assert claims in (None, "")
    assert visible == 0
    for client in (alice.client, bob.client, anonymous):
        await client.aclose()


async def test_twenty_concurrent_creates_of_one_domain_give_one_201_per_seller(
    seller: Account, other_seller: Account
) -> None:
    async def create(n: int) -> int:
        account = seller if n % 2 else other_seller
        response = await account.client.post(
            "/api/integrations",
            json={"name": f"Race {n}", "type": "shopify", "domain": "race-shop.myshopify.com"},
        )
        if response.status_code == 409:
            assert response.json() == {"detail": "This store is already connected."}
        return response.status_code

    statuses = await asyncio.gather(*(create(n) for n in range(20)))
    # One store per seller: each of the two gets exactly one.
    assert sorted(statuses) == [201] * 2 + [409] * 18


@pytest.fixture
async def app_without_database(test_database: TestDatabase) -> AsyncIterator[FastAPI]:
    """The app with its runtime pool pointed at a port nothing listens on."""
    nowhere = f"postgresql://astra_app:x@127.0.0.1:{free_port()}/astra"
    settings = test_database.settings.model_copy(update={"db_pooler_url": nowhere})
    async with running(settings) as application:
        yield application


async def test_requests_refused_before_any_sql_take_no_connection(
    app_without_database: FastAPI,
) -> None:
    """The transaction begins with its first statement: answers that need no database
    (no session, a malformed webhook id) come even while it is down, and a webhook body
    streaming in holds no pooled connection."""
    async with client_for(app_without_database) as client:
        assert (await client.get("/api/integrations")).status_code == 401
        assert (await client.post("/api/webhooks/order?id=12", content=b"{}")).status_code == 404
        needs_database = await client.get(
            "/api/integrations", headers={"Cookie": "astra_session=some-token"}
        )
        assert needs_database.status_code == 503
    assert app_without_database.state.db.pool_stats().in_use == 0
