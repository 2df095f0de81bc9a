"""The endpoint itself: ids, body limits, paused integrations, failures, logs."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.stores import (
    T0,
    Store,
    deliver,
    deliveries_of,
    encode,
    hmac_b64,
    orders_of,
    send_order,
    shopify_headers,
    shopify_order,
)
from tests.conftest import Account

FIVE_MIB = 5 * 1024 * 1024


@pytest.mark.parametrize("query", ["", "?id=", "?id=not-a-uuid", "?id=12", f"?id={uuid.uuid4()}"])
async def test_unknown_or_malformed_id_is_404(
    anonymous: httpx.AsyncClient, shopify_store: Store, query: str
) -> None:
    body = encode(shopify_order())
    response = await anonymous.post(
        f"/api/webhooks/order{query}", content=body, headers=shopify_headers(shopify_store, body)
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "No integration with this id."}


async def test_body_over_5_mib_is_413_from_content_length(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = b"x" * (FIVE_MIB + 1)
    response = await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))

    assert response.status_code == 413
    assert await deliveries_of(owner_engine, shopify_store) == []


async def test_body_over_5_mib_is_413_while_streaming(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    """Chunked: no Content-Length to judge by, so the limit holds while reading."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield b" " * (1024 * 1024)

    headers = shopify_headers(shopify_store, b"")
    response = await anonymous.post(shopify_store.url, content=chunks(), headers=headers)

    assert response.status_code == 413
    assert await deliveries_of(owner_engine, shopify_store) == []


async def test_body_of_exactly_5_mib_is_accepted(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    payload = shopify_order()
    payload["note"] = ""
    padding = FIVE_MIB - len(encode(payload))
    payload["note"] = "n" * padding
    body = encode(payload)
    assert len(body) == FIVE_MIB

    response = await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))

    assert response.status_code == 200, response.text
    [delivery] = await deliveries_of(owner_engine, shopify_store)
    assert delivery["body_bytes"] == FIVE_MIB


async def test_inactive_integration_holds_deliveries_and_loses_no_order(
    anonymous: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    seller: Account,
    shopify_store: Store,
) -> None:
    """Paused: still verified and stored, marked "held", so reactivating loses nothing."""
    paused = await seller.client.put(
        f"/api/integrations/{shopify_store.id}", json={"is_active": False}
    )
    assert paused.status_code == 200

    response = await send_order(anonymous, shopify_store, 5523094421734)

    assert response.status_code == 200
    assert response.json() == {"outcome": "held"}
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["platform_order_id"] == "5523094421734"
    [delivery] = await deliveries_of(owner_engine, shopify_store)
    assert delivery["outcome"] == "held"
    card = (await seller.client.get(f"/api/integrations/{shopify_store.id}")).json()
    assert card["order_count"] == 1

    # Still only for the real store: a paused integration is no open door.
    body = encode(shopify_order(2))
    forged = shopify_headers(shopify_store, body, secret="guessed-secret-0123456789")
    assert (await deliver(anonymous, shopify_store, body, forged)).status_code == 401

    await seller.client.put(f"/api/integrations/{shopify_store.id}", json={"is_active": True})
    assert (await send_order(anonymous, shopify_store, 3)).json() == {"outcome": "stored"}


@asynccontextmanager
async def injected_failure(
    owner_engine: AsyncEngine, table: str, *, at_commit: bool = False, only: str = "true"
) -> AsyncIterator[None]:
    """Make every write to `table` fail inside the database, or only its COMMIT; `only`, a
    condition on the row (NEW), limits it to the rows it holds for."""
    when = (
        "CONSTRAINT TRIGGER test_fail AFTER INSERT ON public.{table} DEFERRABLE INITIALLY DEFERRED"
        if at_commit
        else "TRIGGER test_fail BEFORE INSERT OR UPDATE ON public.{table}"
    )
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE FUNCTION public.test_fail() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN IF {only} THEN RAISE EXCEPTION 'injected failure'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        await connection.execute(
            text(
                f"CREATE {when.format(table=table)} FOR EACH ROW EXECUTE FUNCTION public.test_fail()"
            )
        )
    try:
        yield
    finally:
        async with owner_engine.begin() as connection:
            await connection.execute(text(f"DROP TRIGGER test_fail ON public.{table}"))
            await connection.execute(text("DROP FUNCTION public.test_fail()"))


async def test_database_failure_mid_delivery_is_5xx_and_leaves_nothing(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body)

    async with injected_failure(owner_engine, "orders"):
        response = await deliver(anonymous, shopify_store, body, headers)

    assert response.status_code == 503
    assert "injected" not in response.text
    # The delivery row was written before the order failed: rolled back with it.
    assert await deliveries_of(owner_engine, shopify_store) == []
    assert await orders_of(owner_engine, shopify_store) == []

    retry = await deliver(anonymous, shopify_store, body, headers)

    assert retry.json() == {"outcome": "stored"}, "the platform's retry must not be a duplicate"
    assert len(await deliveries_of(owner_engine, shopify_store)) == 1


async def test_failure_at_commit_is_5xx_not_2xx(
    app: FastAPI, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    """A 2xx only once the commit succeeded: a deferred check failing at COMMIT."""
    body = encode(shopify_order())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        injected_failure(owner_engine, "webhook_deliveries", at_commit=True),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        response = await deliver(client, shopify_store, body, shopify_headers(shopify_store, body))

    assert response.status_code >= 500
    assert "injected" not in response.text
    assert await deliveries_of(owner_engine, shopify_store) == []
    assert await orders_of(owner_engine, shopify_store) == []


async def test_no_session_needed_and_a_cookie_from_another_site_changes_nothing(
    seller: Account, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    """Exempt from the cross-site guard: the signature is the credential, not a cookie."""
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body) | {"Origin": "https://elsewhere.example"}

    response = await deliver(seller.client, shopify_store, body, headers)

    assert response.status_code == 200
    assert len(await orders_of(owner_engine, shopify_store)) == 1


async def test_logs_carry_ids_and_outcomes_but_never_secrets_or_bodies(
    anonymous: httpx.AsyncClient,
    shopify_store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    payload = shopify_order()
    payload["email"] = "very-private-buyer@example.com"
    body = encode(payload)
    await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))
    await deliver(
        anonymous, shopify_store, body, shopify_headers(shopify_store, body, secret="w" * 32)
    )

    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "webhook received" in logged
    assert "bad-signature" in logged
    assert "very-private-buyer" not in logged
    assert shopify_store.secret not in logged
    assert hmac_b64(shopify_store.secret, body) not in logged


async def test_concurrent_copies_of_one_delivery_store_it_once(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    body = encode(shopify_order())
    headers = shopify_headers(shopify_store, body)

    responses = await asyncio.gather(
        *(deliver(anonymous, shopify_store, body, headers) for _ in range(5))
    )

    assert sorted(r.json()["outcome"] for r in responses) == ["duplicate"] * 4 + ["stored"]
    assert len(await deliveries_of(owner_engine, shopify_store)) == 1


async def test_concurrent_versions_of_one_order_keep_the_newest(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    versions = [
        encode(shopify_order(updated_at=T0 + timedelta(minutes=n), total=f"{n}.00"))
        for n in range(1, 9)
    ]
    random.Random(4).shuffle(versions)

    responses = await asyncio.gather(
        *(
            deliver(
                anonymous,
                shopify_store,
                body,
                shopify_headers(shopify_store, body, topic="orders/updated"),
            )
            for body in versions
        )
    )

    assert all(r.status_code == 200 for r in responses)
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["total"] == Decimal("8.00")
    assert len(await deliveries_of(owner_engine, shopify_store)) == 8


def test_openapi_lists_what_the_endpoint_answers(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/api/webhooks/order"]["post"]

    assert sorted(operation["responses"]) == ["200", "400", "401", "404", "413", "503"]
    assert [p["name"] for p in operation["parameters"]] == ["id"]
    assert "security" not in operation
