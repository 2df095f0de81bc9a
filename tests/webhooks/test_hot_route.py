"""The webhook's fast path (astra.http.HotRoutes with astra.webhooks.api.HOT_ROUTE) answers
exactly as the FastAPI route does: the same delivery, its URL spelled so that one goes
through each (an extra query parameter is the route's to read), gives the same status,
body and headers, and is counted the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
from prometheus_client import REGISTRY

from astra.http import HotRoutes
from astra.webhooks.api import HOT_ROUTE, _plain_id
from testkit.stores import Store, encode, shopify_headers, shopify_order, woo_headers, woo_order
from tests.conftest import TestDatabase, client_for, running

# Headers every answer has that differ between two requests by design.
_PER_REQUEST = {"x-request-id", "date"}
_ROUTED = "&via=route"


def _kept(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in _PER_REQUEST}


def _deliveries() -> dict[tuple[str, str], float]:
    return {
        (sample.labels["platform"], sample.labels["outcome"]): sample.value
        for metric in REGISTRY.collect()
        if metric.name == "astra_webhook_deliveries"
        for sample in metric.samples
        if sample.name == "astra_webhook_deliveries_total"
    }


def _counted(before: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {k: v - before.get(k, 0) for k, v in _deliveries().items() if v != before.get(k, 0)}


async def _both(
    client: httpx.AsyncClient,
    url: str,
    content: bytes | Callable[[], AsyncIterator[bytes]],
    headers: dict[str, str],
    status: int,
) -> tuple[httpx.Response, httpx.Response]:
    """The same request through the fast path, then the route: the same answer, the same
    count."""
    answers = []
    counts = []
    for spelled in (url, url + _ROUTED):
        before = _deliveries()
        body = content if isinstance(content, bytes) else content()
        answers.append(await client.post(spelled, content=body, headers=headers))
        counts.append(_counted(before))
    hot, routed = answers
    assert hot.status_code == routed.status_code == status, (hot.text, routed.text)
    assert hot.content == routed.content
    assert _kept(hot) == _kept(routed)
    assert counts[0] == counts[1]
    return hot, routed


async def test_stored_and_duplicate_are_the_same_through_either_path(
    anonymous: httpx.AsyncClient, shopify_store: Store
) -> None:
    stored = []
    for url in (shopify_store.url, shopify_store.url + _ROUTED):
        body = encode(shopify_order(len(stored) + 1))
        before = _deliveries()
        response = await anonymous.post(
            url, content=body, headers=shopify_headers(shopify_store, body)
        )
        stored.append((response, _counted(before)))
    (hot, hot_counted), (routed, routed_counted) = stored
    assert hot.status_code == routed.status_code == 200
    assert hot.content == routed.content == b'{"outcome":"stored"}'
    assert _kept(hot) == _kept(routed)
    assert hot_counted == routed_counted == {("shopify", "stored"): 1}
    assert hot.headers["content-type"] == "application/json"
    assert hot.headers["cache-control"] == "no-store"
    assert hot.headers["x-content-type-options"] == "nosniff"

    body = encode(shopify_order(3))
    headers = shopify_headers(shopify_store, body)
    assert (
        await anonymous.post(shopify_store.url, content=body, headers=headers)
    ).status_code == 200
    hot, _ = await _both(anonymous, shopify_store.url, body, headers, 200)
    assert hot.json() == {"outcome": "duplicate"}


async def test_refusals_are_the_same_through_either_path(
    anonymous: httpx.AsyncClient, shopify_store: Store, woo_store: Store
) -> None:
    body = encode(shopify_order(10))
    forged = shopify_headers(shopify_store, body, secret="guessed-secret-0123456789")
    await _both(anonymous, shopify_store.url, body, forged, 401)

    signed = shopify_headers(shopify_store, body)
    unknown = f"/api/webhooks/order?id={uuid.uuid4()}"
    hot, _ = await _both(anonymous, unknown, body, signed, 404)
    assert hot.json() == {"detail": "No integration with this id."}
    for malformed in ("/api/webhooks/order?id=not-a-uuid", "/api/webhooks/order?id="):
        await _both(anonymous, malformed, body, signed, 404)

    xml = b"<order><id>1</id></order>"
    hot, _ = await _both(
        anonymous, shopify_store.url, xml, shopify_headers(shopify_store, xml), 400
    )
    assert hot.json() == {"detail": "The body is not JSON."}

    woo = encode(woo_order())
    await _both(anonymous, woo_store.url, woo, woo_headers(woo_store, woo, secret="x" * 24), 401)

    ping = {"Content-Type": "application/x-www-form-urlencoded"}
    hot, _ = await _both(anonymous, woo_store.url, b"webhook_id=14", ping, 200)
    assert hot.json() == {"outcome": "ping"}


async def test_oversized_bodies_are_the_same_through_either_path(
    anonymous: httpx.AsyncClient, shopify_store: Store
) -> None:
    cap = 5 * 1024 * 1024
    big = b"x" * (cap + 1)
    # Over the cap by its Content-Length: refused before anything is read.
    await _both(anonymous, shopify_store.url, big, shopify_headers(shopify_store, big), 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield b" " * (1024 * 1024)

    # Chunked: the cap holds while the fast path reads, and the route answers as it always has.
    hot, _ = await _both(
        anonymous, shopify_store.url, chunks, shopify_headers(shopify_store, b""), 413
    )
    assert hot.json() == {"detail": "The body is larger than this endpoint accepts."}


async def test_shutting_down_is_the_same_503_through_either_path(
    test_database: TestDatabase, shopify_store: Store
) -> None:
    async with running(test_database.settings) as app, client_for(app) as client:
        await app.state.webhook_batcher.drain()
        body = encode(shopify_order(20))
        hot, _ = await _both(
            client, shopify_store.url, body, shopify_headers(shopify_store, body), 503
        )
        assert hot.headers["retry-after"] == "5"


def test_the_spellings_above_take_the_paths_they_say(app: object) -> None:
    assert _plain_id(_scope(b"")) == ""
    assert _plain_id(_scope(b"id=")) == ""
    some = uuid.uuid4()
    assert _plain_id(_scope(f"id={some}".encode())) == str(some)
    assert _plain_id(_scope(b"id=not-a-uuid")) == "not-a-uuid"
    for routed in (f"id={some}{_ROUTED}", f"id={some}&id={some}", "id=%31", "x=1", "id=a+b"):
        assert _plain_id(_scope(routed.encode())) is None, routed
    # The app answers the webhook on the fast path.
    hot = [m for m in app.user_middleware if m.cls is HotRoutes]  # type: ignore[attr-defined]
    assert [HOT_ROUTE in m.kwargs["routes"] for m in hot] == [True]


def _scope(query: bytes) -> dict[str, object]:
    return {"query_string": query}
