"""WooCommerce's REST API (wc/v3): a REST key as HTTP Basic auth over HTTPS, the cheap
read that checks it, and the order webhooks.

WordPress serves its REST API under /wp-json/ only with pretty permalinks; otherwise the
route goes in the query string (`/?rest_route=/wc/v3/orders`). The client tries the first
and falls back to the second when /wp-json/ is not WordPress's at all (a 404 that is not a
REST error), then keeps using whichever answered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import httpx
import orjson

from astra.stores.net import StoreHttp, StoreResponse
from astra.stores.problems import StoreProblem

log = logging.getLogger(__name__)

ORDER_TOPICS = ("order.created", "order.updated", "order.deleted", "order.restored")
ORDERS_PAGE = 100  # the most wc/v3 gives in one page
_WEBHOOK_PAGE = 100
# A store with more webhooks than this many pages of them is not one to walk through.
_MAX_WEBHOOK_PAGES = 20
_KEYS_PAGE = "WooCommerce > Settings > Advanced > REST API"


@dataclass(frozen=True, slots=True)
class Webhook:
    remote_id: int
    topic: str
    delivery_url: str
    status: str  # active, paused or disabled


class WooCommerceApi:
    """One store's REST API with one consumer key."""

    def __init__(self, http: StoreHttp, consumer_key: str, consumer_secret: str) -> None:
        self._http = http
        self._auth = httpx.BasicAuth(consumer_key, consumer_secret)
        # None until a call shows whether /wp-json/ works (pretty permalinks).
        self._pretty: bool | None = None
        # Whether the key has read something: a refusal after that is about writing.
        self._has_read = False

    @property
    def domain(self) -> str:
        return self._http.domain

    async def site_name(self) -> str | None:
        """The site's title, from the REST index (no key needed), if the site shows it:
        security plugins often close the index to visitors."""
        response = await self._call("GET", "/", authenticated=False, any_status=True)
        if response.status != 200:
            return None
        body = response.json()
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return None
        return name.strip()

    async def check(self) -> None:
        """The cheapest authenticated read: one order."""
        await self._call("GET", "/wc/v3/orders", params={"per_page": "1"})

    async def orders_page(
        self, *, modified_after: datetime | None, page: int
    ) -> tuple[list[dict[str, Any]], int | None, int | None]:
        """One page of orders, oldest change first (the same shape their webhooks send), the
        next page's number, and how many orders there are in all."""
        params = {
            "per_page": str(ORDERS_PAGE),
            "page": str(page),
            "orderby": "modified",
            "order": "asc",
            "dates_are_gmt": "true",
        }
        if modified_after is not None:
            params["modified_after"] = (
                modified_after.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
            )
        response = await self._call("GET", "/wc/v3/orders", params=params)
        orders = response.json()
        if not isinstance(orders, list) or not all(isinstance(o, dict) for o in orders):
            raise self._unexpected(response, "orders")
        total, pages = (response.headers.get(h, "") for h in ("x-wp-total", "x-wp-totalpages"))
        next_page = page + 1 if pages.isdigit() and page < int(pages) else None
        return orders, next_page, int(total) if total.isdigit() else None

    async def orders_walk(
        self, *, modified_after: datetime | None, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None, int | None]:
        """One page of a walk through the orders modified after `modified_after`, oldest
        change first; the cursor of the next page (None after the last); how many orders
        the page's window holds.

        A change during the walk moves an order to the end of the listing and shifts the
        ones after it a place forward, so page numbers alone would skip one. The walk moves
        its window instead: the next page lists the orders modified since the last one of
        this page (to the second, WooCommerce's precision), less those of that second this
        page gave already."""
        walk = _Walk.parse(cursor) if cursor else _Walk(modified_after)
        orders, next_page, total = await self.orders_page(modified_after=walk.after, page=walk.page)
        fresh = [order for order in orders if order.get("id") not in walk.seen]
        if next_page is None:
            return fresh, None, total
        return fresh, walk.after_page(orders, next_page).cursor(), total

    async def webhooks(self) -> list[Webhook]:
        found: list[Webhook] = []
        for page in range(1, _MAX_WEBHOOK_PAGES + 1):
            response = await self._call(
                "GET", "/wc/v3/webhooks", params={"per_page": str(_WEBHOOK_PAGE), "page": str(page)}
            )
            items = response.json()
            if not isinstance(items, list):
                raise self._unexpected(response, "webhook list")
            found += [hook for hook in map(_webhook, items) if hook is not None]
            pages = response.headers.get("x-wp-totalpages", "1")
            if not pages.isdigit() or page >= int(pages):
                break
        return found

    async def create_webhook(self, topic: str, delivery_url: str, secret: str) -> Webhook:
        # Always our secret: without one WooCommerce makes one up and never tells us.
        response = await self._call(
            "POST",
            "/wc/v3/webhooks",
            json={
                "name": f"Astra {topic}",
                "topic": topic,
                "delivery_url": delivery_url,
                "secret": secret,
                "status": "active",
            },
        )
        return self._webhook_from(response, "webhook create")

    async def update_webhook(self, remote_id: int, fields: Mapping[str, str]) -> Webhook:
        response = await self._call("PUT", f"/wc/v3/webhooks/{remote_id}", json=dict(fields))
        return self._webhook_from(response, "webhook update")

    async def delete_webhook(self, remote_id: int) -> None:
        """Delete for good (webhooks have no trash: without force WooCommerce answers 501);
        one that is already gone is fine."""
        await self._call(
            "DELETE", f"/wc/v3/webhooks/{remote_id}", params={"force": "true"}, missing_ok=True
        )

    def _webhook_from(self, response: StoreResponse, what: str) -> Webhook:
        hook = _webhook(response.json())
        if hook is None:
            raise self._unexpected(response, what)
        return hook

    async def _call(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        authenticated: bool = True,
        missing_ok: bool = False,
        any_status: bool = False,
    ) -> StoreResponse:
        auth = self._auth if authenticated else None
        response: StoreResponse | None = None
        if self._pretty is not False:
            response = await self._http.request(
                method, "/wp-json" + route, params=params, json=json, auth=auth
            )
            # WordPress's REST errors are JSON; a plain 404 page means no pretty permalinks.
            self._pretty = not (response.status == 404 and _rest_error(response) is None)
        if not self._pretty:
            response = await self._http.request(
                method, "/", params={"rest_route": route, **(params or {})}, json=json, auth=auth
            )
        assert response is not None
        if any_status or response.status in (200, 201) or (missing_ok and response.status == 404):
            if method == "GET" and authenticated:
                self._has_read = True
            return response
        raise self._refused(method, response)

    def _refused(self, method: str, response: StoreResponse) -> StoreProblem:
        status, code = response.status, _rest_error(response)
        log.info(
            "woocommerce refused a call",
            extra={"store_domain": self.domain, "status": status, "error_code": code},
        )
        if code == "woocommerce_rest_authentication_error":
            if method != "GET" and self._has_read:
                return StoreProblem(
                    "missing_scope",
                    "The REST API key can read but not write, and setting up webhooks needs "
                    f"both. In {_KEYS_PAGE}, set the key's permissions to Read/Write.",
                )
            return StoreProblem(
                "invalid_credentials",
                "WooCommerce rejected the consumer secret. Copy it again from "
                f"{_KEYS_PAGE} (it is shown only once: if it is lost, create a new key).",
            )
        if code is not None and code.startswith("woocommerce_rest_cannot_"):
            if status == 403:
                return StoreProblem(
                    "missing_scope",
                    "The REST API key belongs to a user who can't manage WooCommerce. "
                    f"Create the key in {_KEYS_PAGE} for an administrator or shop manager.",
                )
            if not self._http.secure:
                return StoreProblem(
                    "invalid_credentials",
                    "WooCommerce accepts a REST API key as a password only over HTTPS, and "
                    f"this call went over plain HTTP to {self.domain}.",
                )
            return StoreProblem(
                "invalid_credentials",
                "WooCommerce doesn't know this consumer key, or the key can't read orders. "
                f"Check it in {_KEYS_PAGE}: permissions Read or Read/Write.",
            )
        if status == 404:
            if code == "rest_no_route":
                return StoreProblem(
                    "unreachable",
                    f"WordPress answers at {self.domain}, but WooCommerce's REST API isn't "
                    "there. Check that the WooCommerce plugin is active.",
                )
            return StoreProblem(
                "unreachable",
                f"No WooCommerce store answers at {self.domain}. Check the store's domain.",
            )
        if status == 429 or status >= 500:
            return StoreProblem(
                "store_unavailable",
                f"{self.domain} couldn't answer right now (HTTP {status}). "
                "Try again in a few minutes.",
                transient=True,
                retry_after=response.retry_after,
            )
        return self._unexpected(response, method)

    def _unexpected(self, response: StoreResponse, what: str) -> StoreProblem:
        log.warning(
            "woocommerce answered unexpectedly",
            extra={"store_domain": self.domain, "status": response.status, "call": what},
        )
        return StoreProblem(
            "store_unavailable",
            f"{self.domain} gave an answer Astra doesn't understand (HTTP {response.status}). "
            "Try again later.",
        )


@dataclass(frozen=True, slots=True)
class _Walk:
    """Where a walk through the orders is: page `page` of the orders modified after `after`
    (None: all), less `seen`, the ids a page already gave."""

    after: datetime | None
    page: int = 1
    seen: frozenset[int] = field(default_factory=frozenset)

    def after_page(self, orders: list[dict[str, Any]], next_page: int) -> _Walk:
        modified = {order.get("id"): _modified(order) for order in orders}
        last = max((moment for moment in modified.values() if moment), default=None)
        if last is None:
            return _Walk(self.after, next_page, self.seen)
        at_last = frozenset(
            i for i, moment in modified.items() if moment == last and isinstance(i, int)
        )
        start = last - timedelta(seconds=1)
        if self.after is None or start > self.after:
            return _Walk(start, 1, at_last)
        # A whole page changed within one second: the window cannot move, the page must.
        return _Walk(self.after, next_page, at_last)

    def cursor(self) -> str:
        after = self.after.isoformat() if self.after else None
        return orjson.dumps({"after": after, "page": self.page, "seen": sorted(self.seen)}).decode()

    @classmethod
    def parse(cls, cursor: str) -> Self:
        data = orjson.loads(cursor)
        after = datetime.fromisoformat(data["after"]) if data["after"] else None
        return cls(after, int(data["page"]), frozenset(int(i) for i in data["seen"]))


def _modified(order: dict[str, Any]) -> datetime | None:
    """When the order last changed, in UTC (`date_modified_gmt`, asked for with
    dates_are_gmt)."""
    value = order.get("date_modified_gmt")
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC) if isinstance(value, str) else None
    except ValueError:
        return None


def _rest_error(response: StoreResponse) -> str | None:
    """The code of a WordPress REST error ({"code", "message", "data"}), if it is one."""
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("code"), str) and "message" in body:
        code: str = body["code"]
        return code
    return None


def _webhook(item: Any) -> Webhook | None:
    if not isinstance(item, dict):
        return None
    remote_id, topic, url, status = (item.get(k) for k in ("id", "topic", "delivery_url", "status"))
    if not isinstance(remote_id, int) or isinstance(remote_id, bool):
        return None
    if not (isinstance(topic, str) and isinstance(url, str) and isinstance(status, str)):
        return None
    return Webhook(remote_id, topic, url, status)
