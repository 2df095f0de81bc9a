"""The admin access token is write-only and encrypted at rest: a dump of the table does
not contain it, the stored text decrypts back with the key, and no response carries it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.crypto import decrypt
from testkit.stores import fetch
from tests.conftest import Account, TestDatabase

BASE = "/api/integrations"
TOKEN = "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"
OTHER_TOKEN = "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"
STORE = {"name": "Linen & Co", "type": "shopify", "domain": "linen-and-co.myshopify.com"}


async def dump_integrations(owner_engine: AsyncEngine) -> str:
    """The table as pg_dump would write its data: COPY ... TO STDOUT, as the owner."""
    chunks: list[bytes] = []

    async def write(chunk: bytes) -> None:
        chunks.append(chunk)

    async with owner_engine.connect() as connection:
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_from_table(  # type: ignore[union-attr]
            "integrations", schema_name="public", output=write
        )
    return b"".join(chunks).decode()


async def stored_token(owner_engine: AsyncEngine, integration_id: str) -> str | None:
    """The stored credentials' text: a legacy access token is kept as credentials."""
    [row] = await fetch(
        owner_engine,
        "SELECT credentials FROM public.integrations WHERE id = :id",
        id=uuid.UUID(integration_id),
    )
    token: str | None = row["credentials"]
    return token


def opened(key: bytes, sealed: str) -> str:
    """The access token inside the stored credentials."""
    token: str = json.loads(decrypt(key, sealed))["access_token"]
    return token


async def create(account: Account, **fields: Any) -> httpx.Response:
    return await account.client.post(BASE, json=STORE | fields)


async def test_the_token_is_stored_encrypted_and_decrypts_with_the_key(
    seller: Account, owner_engine: AsyncEngine, test_database: TestDatabase
) -> None:
    response = await create(seller, admin_access_token=TOKEN)
    assert response.status_code == 201, response.text
    assert response.json()["has_admin_access_token"] is True

    dump = await dump_integrations(owner_engine)
    assert STORE["domain"] in dump  # the dump is the real table
    assert TOKEN not in dump
    assert TOKEN.removeprefix("shpat_") not in dump

    sealed = await stored_token(owner_engine, response.json()["id"])
    assert sealed is not None and sealed in dump
    assert opened(test_database.settings.encryption_key, sealed) == TOKEN
    with pytest.raises(InvalidToken):
        decrypt(Fernet.generate_key(), sealed)


async def test_the_same_token_twice_is_stored_as_two_different_texts(
    seller: Account, owner_engine: AsyncEngine
) -> None:
    first = await create(seller, admin_access_token=TOKEN)
    second = await create(
        seller, admin_access_token=TOKEN, domain="other-linen.myshopify.com", name="Other"
    )
    assert (first.status_code, second.status_code) == (201, 201)
    assert await stored_token(owner_engine, first.json()["id"]) != await stored_token(
        owner_engine, second.json()["id"]
    )


async def test_put_sets_and_replaces_the_token_and_leaves_it_alone_otherwise(
    seller: Account, owner_engine: AsyncEngine, test_database: TestDatabase
) -> None:
    created = (await create(seller)).json()
    assert created["has_admin_access_token"] is False
    assert await stored_token(owner_engine, created["id"]) is None
    key = test_database.settings.encryption_key
    url = f"{BASE}/{created['id']}"

    response = await seller.client.put(url, json={"admin_access_token": f"  {TOKEN}\n"})
    assert (response.status_code, response.json()["has_admin_access_token"]) == (200, True)
    assert opened(key, await stored_token(owner_engine, created["id"]) or "") == TOKEN

    assert (await seller.client.put(url, json={"name": "Renamed"})).status_code == 200
    assert opened(key, await stored_token(owner_engine, created["id"]) or "") == TOKEN

    await seller.client.put(url, json={"admin_access_token": OTHER_TOKEN})
    assert opened(key, await stored_token(owner_engine, created["id"]) or "") == OTHER_TOKEN
    dump = await dump_integrations(owner_engine)
    assert TOKEN not in dump and OTHER_TOKEN not in dump


async def test_no_response_ever_carries_the_token(
    seller: Account, admin: Account, owner_engine: AsyncEngine
) -> None:
    created = await create(seller, admin_access_token=TOKEN)
    url = f"{BASE}/{created.json()['id']}"
    sealed = await stored_token(owner_engine, created.json()["id"])
    assert sealed is not None
    responses = [
        created,
        await seller.client.get(BASE),
        await seller.client.get(url),
        await seller.client.put(url, json={"admin_access_token": TOKEN}),
        # Refused input is not echoed back either.
        await seller.client.put(url, json={"admin_access_token": TOKEN + "x" * 500}),
        await seller.client.put(url, json={"admin_access_token": TOKEN + "\x00"}),
        await seller.client.post(f"{url}/secret"),
        await seller.client.get(f"{url}/deliveries"),
        await seller.client.get("/api/orders"),
        await seller.client.get("/settings/integrations"),
        await admin.client.get(BASE),
        await admin.client.get(url),
    ]
    # Pinned, so that a route failing with a 422 cannot pass for a refusal.
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 422, 422] + [200] * 6
    for response in responses:
        assert TOKEN not in response.text, response.request.url
        assert sealed not in response.text, response.request.url
        if response.status_code != 422:
            assert '"admin_access_token"' not in response.text, response.request.url


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "string_too_short"),
        ("   ", "string_too_short"),
        ("x" * 501, "string_too_long"),
        ("shpat_\x00abc", "string_pattern_mismatch"),
        (None, "not_null"),
        (12345, "string_type"),
    ],
)
async def test_bad_tokens_are_422_and_change_nothing(
    seller: Account, owner_engine: AsyncEngine, value: object, problem: str
) -> None:
    created = (await create(seller, admin_access_token=TOKEN)).json()
    before = await stored_token(owner_engine, created["id"])

    response = await seller.client.put(
        f"{BASE}/{created['id']}", json={"admin_access_token": value}
    )

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "admin_access_token"], problem)
    assert await stored_token(owner_engine, created["id"]) == before
    if value is not None:
        create_response = await create(seller, admin_access_token=value, domain="x.myshopify.com")
        assert create_response.status_code == 422


async def test_a_token_of_500_characters_is_accepted(
    seller: Account, owner_engine: AsyncEngine, test_database: TestDatabase
) -> None:
    response = await create(seller, admin_access_token="t" * 500)
    assert response.status_code == 201
    sealed = await stored_token(owner_engine, response.json()["id"])
    assert opened(test_database.settings.encryption_key, sealed or "") == "t" * 500
