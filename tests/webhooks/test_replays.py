"""The attack review's webhook findings, replayed as the attacker did them (issue 15, items
1 and 6): the platforms sign only the body, so a captured body can be sent again with any
headers, and a signed body can hold values the database cannot store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.stores import (
    Store,
    deliver,
    deliveries_of,
    encode,
    orders_of,
    shopify_headers,
    shopify_order,
    woo_headers,
    woo_order,
)
from tests.conftest import Account


async def _log(seller: Account, store: Store) -> list[dict[str, object]]:
    response = await seller.client.get(f"/api/integrations/{store.id}/deliveries")
    assert response.status_code == 200
    items: list[dict[str, object]] = response.json()["items"]
    return items


async def test_a_captured_shopify_order_sent_as_a_delete_deletes_nothing(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, seller: Account, shopify_store: Store
) -> None:
    body = encode(shopify_order(42, updated_at=datetime.now(UTC)))
    assert (
        await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))
    ).json() == {"outcome": "stored"}

    # The same signed bytes, a new webhook id and another topic.
    replay = await deliver(
        anonymous, shopify_store, body, shopify_headers(shopify_store, body, topic="orders/delete")
    )

    assert replay.status_code == 200
    assert replay.json() == {"outcome": "refused"}
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["deleted_at"] is None
    newest = (await _log(seller, shopify_store))[0]
    assert newest["outcome"] == "refused"
    assert "not a delete" in str(newest["reason"])


@pytest.mark.parametrize("topic", ["order.deleted", "order.restored"])
async def test_a_captured_woocommerce_order_under_a_delete_or_restore_topic(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store, topic: str
) -> None:
    first = datetime.now(UTC) - timedelta(hours=2)
    old = encode(woo_order(727, modified=first, status="processing"))
    newer = encode(woo_order(727, modified=first + timedelta(hours=1), status="completed"))
    for body in (old, newer):
        await deliver(anonymous, woo_store, body, woo_headers(woo_store, body))

    replay = await deliver(anonymous, woo_store, old, woo_headers(woo_store, old, topic=topic))

    assert replay.status_code == 200
    assert replay.json()["outcome"] in {"refused", "stale"}
    [order] = await orders_of(owner_engine, woo_store)
    assert order["deleted_at"] is None
    assert order["financial_status"] == "completed"


async def test_an_old_body_under_a_new_webhook_id_does_not_overwrite_the_newer_version(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    now = datetime.now(UTC)
    old = encode(
        shopify_order(7, updated_at=now - timedelta(minutes=30), financial_status="pending")
    )
    new = encode(shopify_order(7, updated_at=now, financial_status="paid"))
    for body in (old, new):
        await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))

    replay = await deliver(
        anonymous, shopify_store, old, shopify_headers(shopify_store, old, topic="orders/updated")
    )

    assert replay.json() == {"outcome": "stale"}
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["financial_status"] == "paid"


async def test_a_delete_does_not_win_over_a_version_made_after_it(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, shopify_store: Store
) -> None:
    now = datetime.now(UTC)
    body = encode(shopify_order(9, updated_at=now))
    await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))
    # A delete whose event came before the stored version, arriving late (a retry).
    delete = encode({"id": 9})
    late = await deliver(
        anonymous,
        shopify_store,
        delete,
        shopify_headers(
            shopify_store, delete, topic="orders/delete", triggered_at=now - timedelta(minutes=5)
        ),
    )

    assert late.json() == {"outcome": "stale"}
    [order] = await orders_of(owner_engine, shopify_store)
    assert order["deleted_at"] is None


@pytest.mark.parametrize(("age_hours", "outcome"), [(3, "stored"), (6, "refused")])
async def test_shopify_deliveries_past_the_retry_window_are_refused(
    anonymous: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    shopify_store: Store,
    age_hours: int,
    outcome: str,
) -> None:
    """Shopify retries for 4 hours: a delivery triggered longer ago is a replay."""
    triggered = datetime.now(UTC) - timedelta(hours=age_hours)
    body = encode(shopify_order(11, updated_at=triggered))
    response = await deliver(
        anonymous, shopify_store, body, shopify_headers(shopify_store, body, triggered_at=triggered)
    )

    assert response.status_code == 200
    assert response.json() == {"outcome": outcome}
    assert len(await orders_of(owner_engine, shopify_store)) == (outcome == "stored")
    [delivery] = await deliveries_of(owner_engine, shopify_store)
    assert delivery["outcome"] == outcome
    assert (delivery["reason"] is None) == (outcome == "stored")


async def test_a_number_the_database_cannot_hold_is_refused_with_a_2xx(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, seller: Account, shopify_store: Store
) -> None:
    """503 would make Shopify retry for 4 hours and then delete the subscription."""
    body = encode(shopify_order(12)).replace(b'"total_price":"199.00"', b'"total_price":1e-999999')
    assert b"1e-999999" in body

    response = await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))
    again = await deliver(anonymous, shopify_store, body, shopify_headers(shopify_store, body))

    assert response.status_code == again.status_code == 200
    assert response.json() == again.json() == {"outcome": "refused"}
    assert await orders_of(owner_engine, shopify_store) == []
    log = await _log(seller, shopify_store)
    assert [d["outcome"] for d in log] == ["refused", "refused"]
    assert all("cannot store" in str(d["reason"]) for d in log)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_dates_outside_what_a_utc_time_holds_are_kept_as_unknown(
    anonymous: httpx.AsyncClient, owner_engine: AsyncEngine, woo_store: Store, moment: str
) -> None:
    order = woo_order(13) | {"date_created_gmt": moment, "date_modified_gmt": moment}
    body = encode(order)

    response = await deliver(anonymous, woo_store, body, woo_headers(woo_store, body))

    assert response.status_code == 200
    [stored] = await orders_of(owner_engine, woo_store)
    assert stored["raw"]["date_modified_gmt"] == moment
    assert stored["placed_at"] is None
    assert stored["source_updated_at"] is None
