"""The hot path of GET and POST /api/integrations (astra.integrations.hot) answers exactly
as the FastAPI routes do: the same request, spelled so that one goes through each, gives
the same status, body and headers."""

from __future__ import annotations

import httpx
import orjson

from astra.integrations.hot import _page_query, _valid
from tests.conftest import Account

BASE = "/api/integrations"
# Headers every answer has that differ between two requests by design.
_PER_REQUEST = {"x-request-id", "date"}


def _same_headers(one: httpx.Response, other: httpx.Response) -> None:
    def kept(response: httpx.Response) -> dict[str, str]:
        return {k: v for k, v in response.headers.items() if k not in _PER_REQUEST}

    assert kept(one) == kept(other)


async def test_a_page_is_the_same_through_either_path(seller: Account) -> None:
    for n in range(3):
        store = {"name": f"Shop {n}", "type": "woocommerce", "domain": f"s{n}.example.com"}
        assert (await seller.client.post(BASE, json=store)).status_code == 201
    hot = await seller.client.get(BASE, params={"limit": "2"})
    # A leading zero is a spelling only the FastAPI route reads.
    routed = await seller.client.get(f"{BASE}?limit=02")
    assert hot.status_code == routed.status_code == 200
    assert hot.content == routed.content
    _same_headers(hot, routed)
    cursor = hot.json()["next_cursor"]
    assert cursor is not None
    hot_next = await seller.client.get(BASE, params={"limit": "2", "cursor": cursor})
    routed_next = await seller.client.get(f"{BASE}?limit=2&cursor={cursor}&unused=1")
    assert hot_next.content == routed_next.content
    assert len(hot_next.json()["items"]) == 1


async def test_a_create_is_the_same_through_either_path(seller: Account) -> None:
    hot = await seller.client.post(
        BASE,
        content=orjson.dumps({"name": "A", "type": "shopify", "domain": "a.myshopify.com"}),
        headers={"Content-Type": "application/json"},
    )
    # Another JSON media type: the FastAPI route parses it.
    routed = await seller.client.post(
        BASE,
        content=orjson.dumps({"name": "B", "type": "shopify", "domain": "b.myshopify.com"}),
        headers={"Content-Type": "application/vnd.example+json"},
    )
    assert hot.status_code == routed.status_code == 201
    _same_headers(hot, routed)
    one, other = hot.json(), routed.json()
    assert one.keys() == other.keys()
    for varying in ("id", "name", "domain", "created_at", "updated_at", "webhook_secret"):
        one.pop(varying), other.pop(varying)
    one["webhook_url"] = one["webhook_url"].rsplit("=", 1)[0]
    other["webhook_url"] = other["webhook_url"].rsplit("=", 1)[0]
    assert one == other
    # Both are listed, each as the list shows it.
    listed = {item["domain"] for item in (await seller.client.get(BASE)).json()["items"]}
    assert listed == {"a.myshopify.com", "b.myshopify.com"}


async def test_refusals_are_the_same_through_either_path(
    seller: Account, anonymous: httpx.AsyncClient
) -> None:
    hot = await anonymous.get(BASE)
    routed = await anonymous.get(f"{BASE}?limit=050")
    assert hot.status_code == routed.status_code == 401
    assert hot.content == routed.content
    _same_headers(hot, routed)

    store = {"name": "Twice", "type": "woocommerce", "domain": "twice.example.com"}
    assert (await seller.client.post(BASE, json=store)).status_code == 201
    hot = await seller.client.post(BASE, json=store)
    routed = await seller.client.post(
        BASE, content=orjson.dumps(store), headers={"Content-Type": "application/x+json"}
    )
    assert hot.status_code == routed.status_code == 409
    assert hot.content == routed.content
    _same_headers(hot, routed)

    # What the hot path cannot read goes to the route, which says what is wrong.
    invalid = await seller.client.post(BASE, json=store | {"domain": "not a domain"})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "domain"]
    broken = await seller.client.post(
        BASE, content=b"{", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    too_big = await seller.client.get(BASE, params={"limit": "201"})
    assert too_big.status_code == 422


def test_the_spellings_above_take_the_paths_they_say() -> None:
    assert _page_query(b"limit=2") == (2, None)
    assert _page_query(b"") == (50, None)
    assert _page_query(b"limit=2&cursor=abc_-9") == (2, "abc_-9")
    for routed in (b"limit=02", b"limit=050", b"limit=201", b"limit=2&cursor=x&unused=1"):
        assert _page_query(routed) is None
    assert _valid(b"{") is None
    assert _valid(b'{"name":"A","type":"shopify","domain":"a b"}') is None
