"""Shopify's Admin API: the client credentials grant, the GraphQL Admin API and the order
webhook subscriptions an app creates through it.

Pinned to API version 2026-10, the newest stable version (released 2026-10-01, supported
until at least 2027-10-01); 2027-01 is still a release candidate. Shopify supports each
stable version for at least 12 months and, once one is retired, answers its calls with the
oldest supported version: move this pin forward once a year.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from astra.stores.net import StoreHttp, StoreResponse
from astra.stores.problems import StoreProblem

log = logging.getLogger(__name__)

API_VERSION = "2026-10"
# Astra's topic names (the ones in X-Shopify-Topic) and the GraphQL enum for each.
ORDER_TOPICS: Mapping[str, str] = {
    "orders/create": "ORDERS_CREATE",
    "orders/updated": "ORDERS_UPDATED",
    "orders/delete": "ORDERS_DELETE",
}
_TOPIC_NAMES = {enum: name for name, enum in ORDER_TOPICS.items()}
# Without it Shopify shows an app only the last 60 days of orders.
ALL_ORDERS_SCOPE = "read_all_orders"
_READS_ORDERS = frozenset({"read_orders", "write_orders"})
# A throttled call is sent again once, if Shopify's bucket refills within this long.
_MAX_THROTTLE_WAIT = timedelta(seconds=5)
_OAUTH_ERROR = re.compile(r"\b(invalid_client|app_not_installed|shop_not_permitted)\b")

_SHOP_QUERY = """
query AstraCheck {
  shop { name myshopifyDomain }
  currentAppInstallation { accessScopes { handle } }
}
"""
_LIST_QUERY = """
query AstraWebhooks($uri: String!, $topics: [WebhookSubscriptionTopic!]) {
  webhookSubscriptions(first: 100, uri: $uri, topics: $topics) {
    nodes { id topic uri }
  }
}
"""
_CREATE_MUTATION = """
mutation AstraSubscribe($topic: WebhookSubscriptionTopic!, $uri: String!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {uri: $uri, format: JSON}) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
"""
# 2 + 100 x 3 = 302 points a page: the standard bucket (2,000, refilled at 100 a second)
# affords a page every 3 seconds, within what a throttled call waits.
ORDERS_PAGE = 100
# What Astra reads of an order (`_rest_order`), paged or in bulk.
_ORDER_FIELDS = """
      legacyResourceId name email createdAt updatedAt processedAt cancelledAt test
      displayFinancialStatus
      totalPriceSet { shopMoney { amount currencyCode } }"""
_ORDERS_QUERY = f"""
query AstraOrders($first: Int!, $after: String, $query: String) {{
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {{
    nodes {{{_ORDER_FIELDS}
    }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""
# Uncapped (`limit: null`; the default stops counting at 10,000).
_COUNT_QUERY = """
query AstraOrdersCount($query: String) {
  ordersCount(query: $query, limit: null) { count precision }
}
"""
# A bulk query has no cost limit, so it reads each order's line items too (a page of 100
# orders with theirs would cost far more than a query may). Nested connections come back
# as lines of their own naming their order (`__parentId`); `groupObjects: true` puts them
# right below it (the default since 2026-01 scatters them), so the file streams order by
# order.
_BULK_ORDERS = f"""
{{
  orders(sortKey: UPDATED_AT, query: %s) {{
    edges {{
      node {{
      id{_ORDER_FIELDS}
      lineItems {{
        edges {{
          node {{
            id name quantity sku
            originalUnitPriceSet {{ shopMoney {{ amount }} }}
          }}
        }}
      }}
      }}
    }}
  }}
}}
"""
_BULK_START = """
mutation AstraBulkOrders($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: true) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""
_BULK_POLL = """
query AstraBulkOperation($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount rootObjectCount url }
}
"""
# Still going: poll again. Over: COMPLETED, FAILED, CANCELED, EXPIRED.
BULK_RUNNING = frozenset({"CREATED", "RUNNING", "CANCELING"})
_DELETE_MUTATION = """
mutation AstraUnsubscribe($id: ID!) {
  webhookSubscriptionDelete(id: $id) {
    deletedWebhookSubscriptionId
    userErrors { field message }
  }
}
"""


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An Admin API access token; `expires_at` is None for a legacy app's permanent one."""

    value: str
    expires_at: datetime | None

    def __repr__(self) -> str:
        return f"AccessToken(value=<hidden>, expires_at={self.expires_at!r})"

    def expires_within(self, margin: timedelta, *, now: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        return self.expires_at - margin <= (now or datetime.now(UTC))


class TokenRejected(StoreProblem):
    """Shopify answered 401 to the access token: wrong, revoked or expired."""

    def __init__(self, domain: str) -> None:
        super().__init__(
            "invalid_credentials",
            f"Shopify rejected the Admin API access token for {domain}. Copy it again from "
            "your app's API credentials (or reinstall the app), then try again.",
        )


@dataclass(frozen=True, slots=True)
class ShopInfo:
    name: str
    myshopify_domain: str
    scopes: tuple[str, ...]

    @property
    def reads_orders(self) -> bool:
        return not _READS_ORDERS.isdisjoint(self.scopes)


@dataclass(frozen=True, slots=True)
class OrderCount:
    count: int
    # False when Shopify stopped counting (precision AT_LEAST): there are at least `count`.
    exact: bool


@dataclass(frozen=True, slots=True)
class BulkOperation:
    """A bulk query as Shopify reports it. `url`: its JSONL result once COMPLETED (None
    when the query matched nothing); a signed link on another host, valid for 7 days."""

    id: str
    status: str
    error_code: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    url: str | None = None


class BulkOperationFailed(StoreProblem):
    """The bulk operation ended without a result to download: the next sync starts anew."""


@dataclass(frozen=True, slots=True)
class Subscription:
    remote_id: str
    topic: str  # Astra's name: orders/create
    uri: str


async def request_token(http: StoreHttp, client_id: str, client_secret: str) -> AccessToken:
    """Exchange a Dev Dashboard app's client ID and secret for an access token (the client
    credentials grant, for an app installed on a store its own organization owns)."""
    issued = datetime.now(UTC)
    response = await http.request(
        "POST",
        "/admin/oauth/access_token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        },
        headers={"Accept": "application/json"},
    )
    if response.status in (400, 401, 403):
        raise _grant_refused(http.domain, response)
    _raise_for_shop_status(http.domain, response)
    body = response.json()
    token = body.get("access_token") if isinstance(body, dict) else None
    lifetime = body.get("expires_in") if isinstance(body, dict) else None
    if response.status != 200 or not isinstance(token, str) or not token:
        raise _unexpected(http.domain, response.status, "token")
    expires_at = None
    if isinstance(lifetime, int) and not isinstance(lifetime, bool) and lifetime > 0:
        expires_at = issued + timedelta(seconds=lifetime)
    return AccessToken(token, expires_at)


def _grant_refused(domain: str, response: StoreResponse) -> StoreProblem:
    body = response.json()
    code = body.get("error") if isinstance(body, dict) else None
    if not isinstance(code, str):
        # Some OAuth errors come back as a sentence ("Oauth error app_not_installed: ...").
        found = _OAUTH_ERROR.search(response.body[:2000].decode("utf-8", "replace"))
        code = found.group(1) if found else None
    if code == "app_not_installed":
        message = (
            f"The app isn't installed on {domain}. In the Dev Dashboard, install it on this "
            "store, then try again."
        )
    elif code == "shop_not_permitted":
        message = (
            f"Shopify gives these credentials a token only on stores the app's own "
            f"organization owns, and {domain} isn't one. Install the app from that "
            "organization, or use a legacy custom app's access token."
        )
    else:
        message = (
            "Shopify rejected the client ID or client secret. Copy both again from the Dev "
            "Dashboard (your app > Settings), then try again."
        )
    log.info("shopify token refused", extra={"store_domain": domain, "error_code": code})
    return StoreProblem("invalid_credentials", message)


def _raise_for_shop_status(domain: str, response: StoreResponse) -> None:
    """The answers any Shopify endpoint may give about the store itself."""
    status = response.status
    if status == 402:
        raise StoreProblem(
            "store_unavailable",
            f"Shopify has frozen {domain} over an unpaid bill. Once the store owner pays it "
            "(Settings > Billing), try again.",
        )
    if status == 423:
        raise StoreProblem(
            "store_unavailable",
            f"Shopify has locked {domain}. The store owner should check their Shopify admin "
            "and email for why, then try again.",
        )
    if status == 404:
        raise StoreProblem(
            "unreachable",
            f"No Shopify store answers at {domain}. Check the store's .myshopify.com address.",
        )
    if status == 429 or status >= 500:
        raise StoreProblem(
            "store_unavailable",
            f"Shopify couldn't answer for {domain} right now (HTTP {status}). "
            "Try again in a few minutes.",
            transient=True,
            retry_after=response.retry_after,
        )


def _unexpected(domain: str, status: int, what: str) -> StoreProblem:
    log.warning(
        "shopify answered unexpectedly",
        extra={"store_domain": domain, "status": status, "call": what},
    )
    return StoreProblem(
        "store_unavailable",
        f"Shopify gave an answer Astra doesn't understand for {domain} (HTTP {status}). "
        "Try again later.",
    )


def missing_read_orders() -> StoreProblem:
    return StoreProblem(
        "missing_scope",
        "The app isn't allowed to read orders. Give it the read_orders scope (and "
        "read_all_orders for orders older than 60 days), release or reinstall it, "
        "then try again.",
    )


class ShopifyAdmin:
    """The GraphQL Admin API of one store, with one access token."""

    def __init__(self, http: StoreHttp, token: AccessToken) -> None:
        self._http = http
        self._token = token

    @property
    def domain(self) -> str:
        return self._http.domain

    async def query(self, document: str, variables: Mapping[str, Any] | None = None) -> Any:
        """The `data` of a GraphQL operation. A throttled one is sent again once, after
        waiting as long as Shopify's throttle status says it takes to afford it."""
        body = await self._post(document, variables)
        wait = self._throttle_wait(body)
        if wait is not None:
            if wait > _MAX_THROTTLE_WAIT:
                raise self._throttled(wait)
            await asyncio.sleep(wait.total_seconds())
            body = await self._post(document, variables)
            wait = self._throttle_wait(body)
            if wait is not None:
                raise self._throttled(wait)
        errors = body.get("errors")
        if errors:
            codes = [_error_code(error) for error in errors]
            if "ACCESS_DENIED" in codes:
                raise missing_read_orders()
            log.warning(
                "shopify graphql errors", extra={"store_domain": self.domain, "codes": codes}
            )
            raise _unexpected(self.domain, 200, "graphql")
        data = body.get("data")
        if not isinstance(data, dict):
            raise _unexpected(self.domain, 200, "graphql")
        return data

    async def _post(self, document: str, variables: Mapping[str, Any] | None) -> dict[str, Any]:
        response = await self._http.request(
            "POST",
            f"/admin/api/{API_VERSION}/graphql.json",
            json={"query": document, "variables": dict(variables or {})},
            headers={"X-Shopify-Access-Token": self._token.value, "Accept": "application/json"},
        )
        if response.status == 401:
            raise TokenRejected(self.domain)
        if response.status == 403:
            raise missing_read_orders()
        _raise_for_shop_status(self.domain, response)
        body = response.json()
        if response.status != 200 or not isinstance(body, dict):
            raise _unexpected(self.domain, response.status, "graphql")
        return body

    @staticmethod
    def _throttle_wait(body: Mapping[str, Any]) -> timedelta | None:
        """How long until the query is affordable, when Shopify throttled it."""
        errors = body.get("errors")
        if not isinstance(errors, list) or "THROTTLED" not in map(_error_code, errors):
            return None
        try:
            cost = body["extensions"]["cost"]
            status = cost["throttleStatus"]
            needed = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
            seconds = max(needed, 0.0) / float(status["restoreRate"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            # Throttled without saying for how long: a second is what one call costs back.
            seconds = 1.0
        return timedelta(seconds=seconds)

    def _throttled(self, wait: timedelta) -> StoreProblem:
        return StoreProblem(
            "store_unavailable",
            f"Shopify is limiting how fast Astra may call {self.domain}. Try again in a minute.",
            retry_after=wait.total_seconds(),
        )

    async def shop(self) -> ShopInfo:
        data = await self.query(_SHOP_QUERY)
        try:
            shop = data["shop"]
            scopes = tuple(
                scope["handle"] for scope in data["currentAppInstallation"]["accessScopes"]
            )
            return ShopInfo(str(shop["name"]), str(shop["myshopifyDomain"]), scopes)
        except (KeyError, TypeError):
            raise _unexpected(self.domain, 200, "shop") from None

    async def subscriptions(self, uri: str) -> list[Subscription]:
        """The order webhook subscriptions this app has at `uri` (Shopify lists only the
        app's own, API-created ones; three topics fit in one page)."""
        data = await self.query(_LIST_QUERY, {"uri": uri, "topics": list(ORDER_TOPICS.values())})
        try:
            nodes = data["webhookSubscriptions"]["nodes"]
            found = [_subscription(node) for node in nodes]
        except (KeyError, TypeError):
            raise _unexpected(self.domain, 200, "webhook list") from None
        return [sub for sub in found if sub is not None and sub.uri == uri]

    async def subscribe(self, topic: str, uri: str) -> Subscription | None:
        """Create the subscription; None when Shopify says it exists already."""
        data = await self.query(_CREATE_MUTATION, {"topic": ORDER_TOPICS[topic], "uri": uri})
        payload = data.get("webhookSubscriptionCreate") or {}
        errors = payload.get("userErrors") or []
        if errors:
            messages = " ".join(str(error.get("message", "")) for error in errors).lower()
            if "already been taken" in messages:
                return None
            if "protected customer data" in messages:
                raise StoreProblem(
                    "missing_scope",
                    "Shopify hasn't approved the app for protected customer data, which order "
                    "webhooks carry. In the Dev Dashboard, request access under API access > "
                    "Protected customer data, release the app, then try again.",
                )
            log.warning(
                "shopify refused a subscription",
                extra={
                    "store_domain": self.domain,
                    "topic": topic,
                    "fields": [error.get("field") for error in errors],
                },
            )
            raise StoreProblem(
                "store_unavailable",
                f"Shopify refused to set up the {topic} webhook for {self.domain}. "
                "Try again later.",
            )
        created = _subscription(payload.get("webhookSubscription"))
        if created is None:
            raise _unexpected(self.domain, 200, "webhook create")
        return created

    async def orders_page(
        self, *, updated_since: datetime | None, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of orders, oldest update first, and the cursor of the next page."""
        data = await self.query(
            _ORDERS_QUERY,
            {"first": ORDERS_PAGE, "after": after, "query": _updated_since(updated_since)},
        )
        try:
            connection = data["orders"]
            orders = [_rest_order(node) for node in connection["nodes"]]
            page = connection["pageInfo"]
        except (KeyError, TypeError, ValueError):
            raise _unexpected(self.domain, 200, "orders") from None
        cursor = page.get("endCursor") if page.get("hasNextPage") else None
        return orders, cursor if isinstance(cursor, str) else None

    async def orders_count(self, *, updated_since: datetime | None) -> OrderCount:
        """How many orders `orders_page` lists from `updated_since`."""
        data = await self.query(_COUNT_QUERY, {"query": _updated_since(updated_since)})
        try:
            found = data["ordersCount"]
            count, precision = found["count"], found["precision"]
        except (KeyError, TypeError):
            raise _unexpected(self.domain, 200, "orders count") from None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise _unexpected(self.domain, 200, "orders count")
        return OrderCount(count, precision == "EXACT")

    async def start_bulk_orders(self, *, updated_since: datetime | None) -> BulkOperation:
        """Start a bulk query of the orders `orders_page` lists from `updated_since`."""
        search = _updated_since(updated_since)
        document = _BULK_ORDERS % ("null" if search is None else orjson.dumps(search).decode())
        data = await self.query(_BULK_START, {"query": document})
        payload = data.get("bulkOperationRunQuery") or {}
        errors = payload.get("userErrors") or []
        if errors:
            codes = [error.get("code") for error in errors if isinstance(error, dict)]
            log.warning(
                "shopify refused a bulk operation",
                extra={"store_domain": self.domain, "codes": codes},
            )
            if "LIMIT_REACHED" in codes or "OPERATION_IN_PROGRESS" in codes:
                raise StoreProblem(
                    "store_unavailable",
                    f"Shopify is already running as many bulk exports for this app on "
                    f"{self.domain} as it allows at once (other tools using the same app's "
                    "credentials may be running theirs). Try again once they have finished.",
                    transient=True,
                )
            raise _unexpected(self.domain, 200, "bulk operation")
        operation = _bulk_operation(payload.get("bulkOperation"))
        if operation is None:
            raise _unexpected(self.domain, 200, "bulk operation")
        return operation

    async def bulk_operation(self, operation_id: str) -> BulkOperation:
        """The bulk operation as it is now."""
        data = await self.query(_BULK_POLL, {"id": operation_id})
        operation = _bulk_operation(data.get("bulkOperation"))
        if operation is None:
            raise BulkOperationFailed(
                "store_unavailable",
                f"Shopify no longer knows the export Astra started for {self.domain}. The "
                "next sync starts a new one.",
            )
        return operation

    def bulk_failure(self, operation: BulkOperation) -> StoreProblem:
        """Why a bulk operation that ended without a result did, for the seller."""
        if operation.status == "FAILED" and operation.error_code == "ACCESS_DENIED":
            # Once the scope is granted, a new operation is what works: not this one again.
            return BulkOperationFailed("missing_scope", missing_read_orders().message)
        if operation.status == "FAILED":
            reason = {
                "TIMEOUT": "took longer than Shopify allows",
                "INTERNAL_SERVER_ERROR": "failed inside Shopify",
            }.get(operation.error_code or "", "failed")
        elif operation.status == "CANCELED":
            reason = "was cancelled"
        else:
            reason = "expired before Astra downloaded it"
        log.warning(
            "shopify bulk operation ended without a result",
            extra={
                "store_domain": self.domain,
                "bulk_status": operation.status,
                "error_code": operation.error_code,
            },
        )
        return BulkOperationFailed(
            "store_unavailable",
            f"Shopify's export of the orders of {self.domain} {reason}. The next sync "
            "starts a new one.",
        )

    async def bulk_orders(self, url: str, *, skip: int = 0) -> AsyncGenerator[dict[str, Any]]:
        """The orders of a bulk query's result at `url`, in the shape `orders_page` gives
        them (line items included), streamed from the file, after its first `skip`."""
        seen = 0
        order: dict[str, Any] | None = None
        items: list[dict[str, Any]] = []
        async with aclosing(self._http.lines(url)) as lines:
            async for line in lines:
                if not line.strip():
                    continue
                # Parsed even when skipped: an order's own text (a buyer's email, the
                # shop's order name) may hold `"__parentId`, so only the JSON says
                # whether a line is an order or one of its line items.
                try:
                    node = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise _unexpected(self.domain, 200, "bulk result") from None
                if not isinstance(node, dict):
                    raise _unexpected(self.domain, 200, "bulk result")
                root = "__parentId" not in node
                if root:
                    seen += 1
                    if order is not None:
                        yield self._bulk_order(order, items)
                        order, items = None, []
                if seen <= skip:
                    continue
                if root:
                    order = node
                elif order is None or node.pop("__parentId", None) != order.get("id"):
                    # Asked for grouped output: a line item away from its order is a file
                    # Astra can't read order by order.
                    raise _unexpected(self.domain, 200, "bulk result")
                else:
                    items.append(node)
        if order is not None:
            yield self._bulk_order(order, items)

    def _bulk_order(self, node: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            order = _rest_order(node)
            order["line_items"] = [_rest_line_item(item) for item in items]
        except (KeyError, TypeError, ValueError):
            raise _unexpected(self.domain, 200, "bulk result") from None
        return order

    async def unsubscribe(self, remote_id: str) -> None:
        """Delete one subscription; one that is already gone is fine."""
        data = await self.query(_DELETE_MUTATION, {"id": remote_id})
        payload = data.get("webhookSubscriptionDelete") or {}
        if payload.get("userErrors") and not payload.get("deletedWebhookSubscriptionId"):
            log.info(
                "shopify subscription already gone",
                extra={"store_domain": self.domain, "remote_id": remote_id},
            )


def _rest_order(node: Mapping[str, Any]) -> dict[str, Any]:
    """An order from the GraphQL API in the shape Shopify's orders/* webhooks send it (the
    fields Astra reads), so synced and delivered orders are read by the same rules."""
    money = node["totalPriceSet"]["shopMoney"]
    status = node.get("displayFinancialStatus")
    return {
        "id": int(node["legacyResourceId"]),
        "admin_graphql_api_id": f"gid://shopify/Order/{node['legacyResourceId']}",
        "name": node["name"],
        "email": node.get("email"),
        "created_at": node["createdAt"],
        "updated_at": node["updatedAt"],
        "processed_at": node.get("processedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "currency": money["currencyCode"],
        "total_price": money["amount"],
        "financial_status": status.lower() if isinstance(status, str) else None,
        "test": node.get("test"),
    }


def _rest_line_item(node: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": _legacy_id(node["id"]),
        "name": node.get("name"),
        "quantity": node.get("quantity"),
        "sku": node.get("sku"),
        "price": node["originalUnitPriceSet"]["shopMoney"]["amount"],
    }


def _legacy_id(gid: Any) -> int:
    """The number a GraphQL id ends with (gid://shopify/LineItem/123 -> 123)."""
    return int(str(gid).rsplit("/", 1)[-1])


def _updated_since(moment: datetime | None) -> str | None:
    """The search query for orders updated at or after `moment` (None: every order)."""
    if moment is None:
        return None
    return f"updated_at:>='{moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"


def _bulk_operation(node: Any) -> BulkOperation | None:
    if not isinstance(node, dict):
        return None
    ident, status = node.get("id"), node.get("status")
    if not isinstance(ident, str) or not isinstance(status, str):
        return None
    url = node.get("url")
    code = node.get("errorCode")
    return BulkOperation(
        ident,
        status,
        code if isinstance(code, str) else None,
        _count(node.get("objectCount")),
        _count(node.get("rootObjectCount")),
        url if isinstance(url, str) and url else None,
    )


def _count(value: Any) -> int:
    # UnsignedInt64 comes as a string.
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _subscription(node: Any) -> Subscription | None:
    if not isinstance(node, dict):
        return None
    topic = _TOPIC_NAMES.get(node.get("topic"))  # type: ignore[arg-type]
    if topic is None or not isinstance(node.get("id"), str) or not isinstance(node.get("uri"), str):
        return None
    return Subscription(node["id"], topic, node["uri"])


def _error_code(error: Any) -> str | None:
    if isinstance(error, dict):
        extensions = error.get("extensions")
        if isinstance(extensions, dict) and isinstance(extensions.get("code"), str):
            code: str = extensions["code"]
            return code
    return None
