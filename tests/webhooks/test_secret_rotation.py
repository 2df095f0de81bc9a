"""POST /api/integrations/{id}/secret: rotate, or use the store's own signing key."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.stores import Store, deliver, encode, fetch, shopify_headers, shopify_order
from tests.conftest import Account

SHOPIFY_KEY = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa00"


def secret_url(store: Store) -> str:
    return f"/api/integrations/{store.id}/secret"


async def signed_with(client: httpx.AsyncClient, store: Store, secret: str, order_id: int) -> int:
    body = encode(shopify_order(order_id))
    response = await deliver(client, store, body, shopify_headers(store, body, secret=secret))
    return response.status_code


async def test_anonymous_is_401(anonymous: httpx.AsyncClient, shopify_store: Store) -> None:
    assert (await anonymous.post(secret_url(shopify_store))).status_code == 401


async def test_other_seller_is_403_and_the_secret_stays(
    anonymous: httpx.AsyncClient, other_seller: Account, shopify_store: Store
) -> None:
    response = await other_seller.client.post(secret_url(shopify_store))

    assert response.status_code == 403
    assert "webhook_secret" not in response.text
    assert await signed_with(anonymous, shopify_store, shopify_store.secret, 1) == 200


async def test_unknown_integration_is_404(seller: Account) -> None:
    response = await seller.client.post(f"/api/integrations/{uuid.uuid4()}/secret")
    assert response.status_code == 404


@pytest.mark.parametrize("who", ["seller", "admin"])
async def test_owner_or_admin_rotates_and_sees_the_new_secret_once(
    anonymous: httpx.AsyncClient,
    seller: Account,
    admin: Account,
    shopify_store: Store,
    who: str,
) -> None:
    account = {"seller": seller, "admin": admin}[who]

    response = await account.client.post(secret_url(shopify_store))

    assert response.status_code == 200, response.text
    new_secret = response.json()["webhook_secret"]
    assert len(new_secret) >= 32
    assert new_secret != shopify_store.secret
    assert response.json()["previous_secret_expires_at"] is not None
    shown = await account.client.get(f"/api/integrations/{shopify_store.id}")
    assert new_secret not in shown.text
    assert await signed_with(anonymous, shopify_store, new_secret, 1) == 200


async def test_previous_secret_verifies_during_the_grace_period_then_stops(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, seller: Account, shopify_store: Store
) -> None:
    old_secret = shopify_store.secret
    new_secret = (await seller.client.post(secret_url(shopify_store))).json()["webhook_secret"]

    # Shopify may sign with the old key for up to an hour after a rotation.
    assert await signed_with(anonymous, shopify_store, old_secret, 1) == 200
    assert await signed_with(anonymous, shopify_store, new_secret, 2) == 200

    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE integrations SET previous_secret_expires_at = now() - interval '1 second' "
                "WHERE id = :id"
            ),
            {"id": shopify_store.id},
        )

    assert await signed_with(anonymous, shopify_store, old_secret, 3) == 401
    assert await signed_with(anonymous, shopify_store, new_secret, 4) == 200


async def test_grace_period_follows_the_setting(
    owner_engine: AsyncEngine, seller: Account, shopify_store: Store
) -> None:
    response = await seller.client.post(secret_url(shopify_store))
    [row] = await fetch(
        owner_engine,
        "SELECT extract(epoch FROM previous_secret_expires_at - now()) / 3600 AS hours "
        "FROM integrations WHERE id = :id",
        id=shopify_store.id,
    )
    hours = row["hours"]
    assert response.status_code == 200
    assert 23.9 < float(hours) <= 24


async def test_rotating_again_drops_the_oldest_secret(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store
) -> None:
    first = shopify_store.secret
    second = (await seller.client.post(secret_url(shopify_store))).json()["webhook_secret"]
    third = (await seller.client.post(secret_url(shopify_store))).json()["webhook_secret"]

    assert await signed_with(anonymous, shopify_store, first, 1) == 401
    assert await signed_with(anonymous, shopify_store, second, 2) == 200
    assert await signed_with(anonymous, shopify_store, third, 3) == 200


async def test_shopifys_signing_key_can_be_set(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store
) -> None:
    """Shopify signs admin-created webhooks with the key on its Notifications page."""
    response = await seller.client.post(
        secret_url(shopify_store), json={"webhook_secret": f"  {SHOPIFY_KEY}\n"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["webhook_secret"] == SHOPIFY_KEY
    assert await signed_with(anonymous, shopify_store, SHOPIFY_KEY, 1) == 200
    # The generated secret it replaced keeps working through the grace period.
    assert await signed_with(anonymous, shopify_store, shopify_store.secret, 2) == 200


async def test_setting_the_current_key_again_changes_nothing(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store
) -> None:
    for _ in range(2):
        response = await seller.client.post(
            secret_url(shopify_store), json={"webhook_secret": SHOPIFY_KEY}
        )
        assert response.status_code == 200
    # The secret replaced first is still the previous one, not the key itself.
    assert await signed_with(anonymous, shopify_store, shopify_store.secret, 1) == 200


@pytest.mark.parametrize(
    "body",
    [
        {"webhook_secret": "too-short"},
        {"webhook_secret": "has spaces inside of it 123"},
        {"webhook_secret": "ünïcödé-ünïcödé-ünïcödé"},
        {"webhook_secret": "nul\u0000nul\u0000nul\u0000nul\u0000"},
        {"webhook_secret": "x" * 201},
        {"webhook_secret": 12345678901234567890},
        {"secret": SHOPIFY_KEY},
    ],
)
async def test_an_unusable_key_is_422_and_the_secret_stays(
    anonymous: httpx.AsyncClient, seller: Account, shopify_store: Store, body: object
) -> None:
    response = await seller.client.post(secret_url(shopify_store), json=body)

    assert response.status_code == 422
    assert await signed_with(anonymous, shopify_store, shopify_store.secret, 1) == 200
