"""A simulated Shopify store: the client credentials grant, the GraphQL Admin API (validated
against the schema subset in shopify_schema), cost-based throttling, webhook subscriptions
and their deliveries, signed as Shopify signs them.

Behaviour follows shopify.dev: tokens from the grant last `token_lifetime` seconds and
then answer 401; a frozen store answers 402 and a locked one 423; a field the app has no
scope for is an ACCESS_DENIED error; every answer carries `extensions.cost`; a subscription
whose deliveries fail 8 times in a row is deleted.

Bulk queries (`bulkOperationRunQuery`, API 2026-01 and later): the inner query is parsed and
validated as Shopify does (one top-level connection, at most 5 connections nested at most 2
deep, `id` selected on a node with a nested connection); at most 5 run at once per app
(`LIMIT_REACHED`). An operation is CREATED, RUNNING for `bulk_seconds` of real time (its
objectCount growing), then COMPLETED with its JSONL on the simulated cloud storage host
(`testkit.simulators.storage`; `url` null when nothing matched) - or FAILED with
`bulk_fail`'s errorCode, or ACCESS_DENIED when the query reads what the app may not. Nested
connections come as lines of their own with `__parentId`, right below their parent only
with `groupObjects: true` (the default scatters them). The link expires `link_lifetime`
after completion, the operation itself (EXPIRED) after 7 days.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

import httpx
from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    execute,
    get_named_type,
    get_operation_ast,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from testkit.simulators.base import SimOrder, SimulatedStore
from testkit.simulators.shopify_schema import admin_schema

VERSIONS = frozenset({"2026-01", "2026-04", "2026-07", "2026-10", "2027-01", "unstable"})
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"  # noqa: S105 - Shopify's error text
MAX_QUERY_COST = 1000
MAX_PAGE = 250
# Consecutive failed deliveries after which Shopify deletes an API-created subscription.
MAX_FAILURES = 8
READS_ORDERS = frozenset({"read_orders", "write_orders"})
STORE_TIMEZONE = timezone(timedelta(hours=-5))
_GRAPHQL_PATH = re.compile(r"/admin/api/([^/]+)/graphql\.json")
_QUERY_TERM = re.compile(r"(updated_at|created_at):(>=|<=|>|<)?['\"]?([^'\"\s]+)['\"]?")

_SCHEMA: GraphQLSchema | None = None


def schema() -> GraphQLSchema:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = admin_schema()
        _bind_resolvers(_SCHEMA)
    return _SCHEMA


@dataclass
class App:
    """An app installed on the store: a Dev Dashboard app (client ID and secret, tokens by
    the client credentials grant) or a legacy custom app (one permanent token)."""

    key: str
    secret: str  # signs the app's webhook deliveries
    scopes: list[str]
    client_id: str | None = None
    legacy_token: str | None = None
    installed: bool = True
    same_organization: bool = True
    # Approved for protected customer data (which order webhooks carry).
    protected_data: bool = True

    @property
    def client_secret(self) -> str:
        return self.secret


@dataclass
class Token:
    app: App
    expires_at: datetime | None


@dataclass
class Subscription:
    number: int
    app: App
    topic: str  # GraphQL enum, ORDERS_CREATE
    uri: str
    format: str
    api_version: str
    created_at: datetime
    failures: int = 0

    @property
    def gid(self) -> str:
        return f"gid://shopify/WebhookSubscription/{self.number}"


@dataclass
class Attempt:
    subscription: Subscription
    status: int | None  # None: no answer at all
    removed: bool = False


@dataclass
class _Pending:
    subscription: Subscription
    topic: str
    body: bytes
    webhook_id: str
    event_id: str
    triggered_at: datetime


@dataclass
class _Context:
    store: SimulatedShopify
    app: App
    version: str
    # Running a bulk query: connections hand over every node, without first/last. A first
    # pass puts the ids the listing holds, in order, in `bulk_listing`; later passes each
    # render a slice of them (`bulk_ids`).
    bulk: bool = False
    bulk_listing: list[int] | None = None
    bulk_ids: list[int] | None = None


RESULT_LIFETIME = timedelta(days=7)
MAX_BULK_QUERIES = 5
MAX_BULK_CONNECTIONS = 5
MAX_BULK_DEPTH = 2
BULK_SLICE = 250


@dataclass
class BulkOp:
    number: int
    app: App
    query: str
    group: bool
    created_at: datetime
    # What the query gave so far (worked out in the background, slice by slice), and
    # whether all of it is there; `fail_with`: the errorCode it ends with instead.
    lines: list[bytes] = field(default_factory=list)
    roots: int = 0
    ready: bool = False
    fail_with: str | None = None
    work: asyncio.Task[None] | None = None
    status: str = "CREATED"
    error_code: str | None = None
    completed_at: datetime | None = None
    object_count: int = 0
    root_object_count: int = 0
    path: str | None = None

    @property
    def gid(self) -> str:
        return f"gid://shopify/BulkOperation/{self.number}"


class SimulatedShopify(SimulatedStore):
    def __init__(
        self,
        domain: str,
        *,
        name: str = "Simulated Shop",
        seed: int = 1,
        order_count: int = 5,
    ) -> None:
        super().__init__(domain, seed=seed, order_count=order_count, first_order_id=5_523_094_000)
        self.name = name
        self.state: Literal["active", "frozen", "locked"] = "active"
        # What `shop.myshopifyDomain` says; differs from `domain` for a store answering
        # under an address that isn't its own.
        self.myshopify_domain = domain
        self.token_lifetime = 86_399
        self.apps: list[App] = []
        self.tokens: dict[str, Token] = {}
        self.subscriptions: dict[int, Subscription] = {}
        self._next_subscription = 1
        self.pending: list[_Pending] = []
        # The cost bucket (standard plan figures).
        self.maximum_available = 2000.0
        self.restore_rate = 100.0
        self.currently_available = self.maximum_available
        self._bucket_checked = self.now()
        # Bulk queries, and how they behave (see the module's docstring).
        self.bulk_operations: dict[int, BulkOp] = {}
        self._next_bulk = 1
        self.bulk_seconds = 1.0
        self.bulk_fail: str | None = None
        self.link_lifetime = RESULT_LIFETIME
        self.download_scheme = "https"
        self.requests: list[str] = []  # the GraphQL operations received, by name
        # The arguments of every orders page served, in order.
        self.order_queries: list[dict[str, Any]] = []
        self.token_requests = 0

    # --- set-up knobs -----------------------------------------------------------------

    def install_app(
        self,
        scopes: Iterable[str] = ("read_orders",),
        *,
        installed: bool = True,
        same_organization: bool = True,
        protected_data: bool = True,
    ) -> App:
        """A Dev Dashboard app installed on this store (or, with `installed=False`, made but
        not installed; with `same_organization=False`, from an organization that doesn't
        own the store)."""
        client_id = secrets.token_hex(16)
        app = App(
            key=client_id,
            secret="shpss_" + secrets.token_hex(16),
            scopes=list(scopes),
            client_id=client_id,
            installed=installed,
            same_organization=same_organization,
            protected_data=protected_data,
        )
        self.apps.append(app)
        return app

    def install_legacy_app(self, scopes: Iterable[str] = ("read_orders",)) -> App:
        """A custom app made in the store's admin before 2026: a permanent token."""
        token = "shpat_" + secrets.token_hex(16)
        app = App(key=token, secret=secrets.token_hex(16), scopes=list(scopes), legacy_token=token)
        self.apps.append(app)
        self.tokens[token] = Token(app, None)
        return app

    def expire_tokens(self) -> None:
        """Every token from the grant expires now (legacy tokens never do)."""
        for token in self.tokens.values():
            if token.expires_at is not None:
                token.expires_at = self.now()

    def drain_throttle(self, available: float = 0.0) -> None:
        self._refill()
        self.currently_available = available

    def subscriptions_of(self, app: App) -> list[Subscription]:
        return [sub for sub in self.subscriptions.values() if sub.app is app]

    # --- deliveries -------------------------------------------------------------------

    async def fire(self, topic: str, order: SimOrder) -> list[Attempt]:
        """Deliver `topic` (orders/create, ...) for `order` to every subscription to it, once.
        Failed deliveries wait in `pending` for `retry_failed`."""
        enum = topic.upper().replace("/", "_")
        payload = {"id": order.id} if topic == "orders/delete" else rest_order(order)
        body = json.dumps(payload, separators=(",", ":")).encode()
        event_id = str(uuid.uuid4())
        attempts = []
        for sub in list(self.subscriptions.values()):
            if sub.topic == enum:
                pending = _Pending(sub, topic, body, str(uuid.uuid4()), event_id, self.now())
                attempts.append(await self._attempt(pending))
        return attempts

    async def retry_failed(self) -> list[Attempt]:
        """The next retry of every failed delivery (Shopify spaces them over 4 hours)."""
        waiting, self.pending = self.pending, []
        return [
            await self._attempt(item)
            for item in waiting
            if item.subscription.number in self.subscriptions
        ]

    async def exhaust_retries(self) -> list[Attempt]:
        """Retry until every failed delivery got through or its subscription was deleted."""
        attempts: list[Attempt] = []
        for _ in range(MAX_FAILURES):
            attempts += await self.retry_failed()
        return attempts

    async def _attempt(self, pending: _Pending) -> Attempt:
        sub = pending.subscription
        moment = pending.triggered_at
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": pending.topic,
            "X-Shopify-Hmac-Sha256": base64.b64encode(
                hmac.new(sub.app.secret.encode(), pending.body, hashlib.sha256).digest()
            ).decode(),
            "X-Shopify-Shop-Domain": self.myshopify_domain,
            "X-Shopify-API-Version": sub.api_version,
            "X-Shopify-Webhook-Id": pending.webhook_id,
            "X-Shopify-Event-Id": pending.event_id,
            "X-Shopify-Triggered-At": f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}000Z",
        }
        status: int | None
        try:
            response = await self.delivery_client.post(
                sub.uri,
                content=pending.body,
                headers=headers,
                timeout=httpx.Timeout(5.0, connect=1.0),
                follow_redirects=False,
            )
            status = response.status_code
        except httpx.HTTPError:
            status = None
        # Anything but a 2xx is a failure, redirects included.
        if status is not None and 200 <= status < 300:
            sub.failures = 0
            return Attempt(sub, status)
        sub.failures += 1
        if sub.failures >= MAX_FAILURES:
            del self.subscriptions[sub.number]
            self.pending = [item for item in self.pending if item.subscription is not sub]
            return Attempt(sub, status, removed=True)
        self.pending.append(pending)
        return Attempt(sub, status)

    # --- bulk operations --------------------------------------------------------------

    def bulk_of(self, app: App) -> list[BulkOp]:
        return [op for op in self.bulk_operations.values() if op.app is app]

    def refresh(self, op: BulkOp) -> BulkOp:
        """Bring the operation to where real time has taken it."""
        now = self.now()
        elapsed = (now - op.created_at).total_seconds()
        if op.status == "CREATED" and elapsed >= min(0.2, self.bulk_seconds / 5):
            op.status = "RUNNING"
        if op.status == "RUNNING":
            if not op.ready or elapsed < self.bulk_seconds:
                op.object_count, op.root_object_count = len(op.lines), op.roots
            elif op.fail_with is not None:
                op.status, op.error_code = "FAILED", op.fail_with
                op.object_count = len(op.lines) // 2
                op.root_object_count = op.roots // 2
            else:
                op.status, op.completed_at = "COMPLETED", now
                op.object_count, op.root_object_count = len(op.lines), op.roots
                if op.lines:
                    assert self._server is not None, "add the store to a StoreServer first"
                    op.path = self._server.storage.put(
                        b"".join(line + b"\n" for line in op.lines), clock=self.now
                    )
        elif op.status == "CANCELING":
            op.status = "CANCELED"
        if (
            op.status == "COMPLETED"
            and op.completed_at is not None
            and now > op.completed_at + RESULT_LIFETIME
        ):
            op.status, op.path = "EXPIRED", None
        return op

    def bulk_node(self, op: BulkOp) -> dict[str, Any]:
        self.refresh(op)
        url = None
        if op.path is not None and op.completed_at is not None and self._server is not None:
            url = self._server.storage.signed_url(
                op.path,
                signed_at=op.completed_at,
                lifetime=self.link_lifetime,
                scheme=self.download_scheme,
            )
        size = None
        if op.status == "COMPLETED":
            size = str(sum(len(line) + 1 for line in op.lines))
        return {
            "id": op.gid,
            "status": op.status,
            "type": "QUERY",
            "query": op.query,
            "errorCode": op.error_code,
            "createdAt": _utc(op.created_at),
            "completedAt": _utc(op.completed_at) if op.completed_at else None,
            "objectCount": str(op.object_count),
            "rootObjectCount": str(op.root_object_count),
            "fileSize": size,
            "url": url,
            "partialDataUrl": None,
        }

    # --- HTTP -------------------------------------------------------------------------

    async def handle(self, request: Request, path: str) -> Response:
        if path == "/admin/oauth/access_token" and request.method == "POST":
            return await self._token_exchange(request)
        match = _GRAPHQL_PATH.fullmatch(path)
        if match and request.method == "POST" and match.group(1) in VERSIONS:
            return await self._graphql(request, match.group(1))
        return JSONResponse({"errors": "Not Found"}, status_code=404)

    async def _token_exchange(self, request: Request) -> Response:
        self.token_requests += 1
        if request.headers.get("content-type", "").startswith("application/json"):
            params = await request.json()
        else:
            params = dict(parse_qsl((await request.body()).decode()))
        if params.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type", "The grant type is not supported.")
        app = next((a for a in self.apps if a.client_id == params.get("client_id")), None)
        if app is None or not hmac.compare_digest(
            app.secret.encode(), str(params.get("client_secret", "")).encode()
        ):
            return _oauth_error(
                "invalid_client",
                "Client authentication failed due to unknown client, no client "
                "authentication included, or unsupported authentication method.",
            )
        if not app.installed:
            return _oauth_error(
                "app_not_installed", "The application is not installed on this shop."
            )
        if not app.same_organization:
            return _oauth_error(
                "shop_not_permitted",
                "Client credentials cannot be performed on this shop.",
            )
        value = "shpat_" + secrets.token_hex(16)
        self.tokens[value] = Token(app, self.now() + timedelta(seconds=self.token_lifetime))
        return JSONResponse(
            {
                "access_token": value,
                "scope": ",".join(app.scopes),
                "expires_in": self.token_lifetime,
            }
        )

    def _app_for(self, request: Request) -> App | None:
        token = self.tokens.get(request.headers.get("x-shopify-access-token", ""))
        if token is None or not token.app.installed:
            return None
        if token.expires_at is not None and token.expires_at <= self.now():
            return None
        return token.app

    async def _graphql(self, request: Request, version: str) -> Response:
        app = self._app_for(request)
        if app is None:
            return JSONResponse({"errors": INVALID_TOKEN}, status_code=401)
        if self.state == "frozen":
            return JSONResponse({"errors": "Unavailable Shop"}, status_code=402)
        if self.state == "locked":
            return JSONResponse({"errors": "This shop is unavailable"}, status_code=423)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return JSONResponse(
                {"errors": {"query": "Required parameter missing or invalid"}}, status_code=400
            )
        variables = body.get("variables") or {}
        try:
            document = parse(body["query"])
        except GraphQLError as error:
            return JSONResponse({"errors": [_formatted(error, "PARSE_ERROR")]})
        invalid = validate(schema(), document)
        if invalid:
            return JSONResponse({"errors": [_formatted(e, "VALIDATION_ERROR") for e in invalid]})
        operation = get_operation_ast(document, body.get("operationName"))
        if operation is not None and operation.name is not None:
            self.requests.append(operation.name.value)
        cost = query_cost(schema(), document, operation, variables)
        if cost > MAX_QUERY_COST:
            return JSONResponse(
                {
                    "errors": [
                        {
                            "message": f"Query cost is {cost}, which exceeds the single query "
                            f"max cost limit ({MAX_QUERY_COST}).",
                            "extensions": {
                                "code": "MAX_COST_EXCEEDED",
                                "cost": cost,
                                "maxCost": MAX_QUERY_COST,
                            },
                        }
                    ]
                }
            )
        self._refill()
        if cost > self.currently_available:
            return JSONResponse(
                {
                    "errors": [
                        {
                            "message": "Throttled",
                            "extensions": {
                                "code": "THROTTLED",
                                "documentation": "https://shopify.dev/api/usage/rate-limits",
                            },
                        }
                    ],
                    "extensions": {"cost": self._cost(cost, None)},
                }
            )
        self.currently_available -= cost
        result = execute(
            schema(),
            document,
            context_value=_Context(self, app, version),
            variable_values=variables,
            operation_name=body.get("operationName"),
        )
        if inspect.isawaitable(result):
            result = await result
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [error.formatted for error in result.errors]
        answer["extensions"] = {"cost": self._cost(cost, cost)}
        return JSONResponse(answer)

    def _refill(self) -> None:
        now = self.now()
        elapsed = (now - self._bucket_checked).total_seconds()
        self._bucket_checked = now
        self.currently_available = min(
            self.maximum_available, self.currently_available + max(elapsed, 0.0) * self.restore_rate
        )

    def _cost(self, requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self.maximum_available,
                "currentlyAvailable": round(self.currently_available, 1),
                "restoreRate": self.restore_rate,
            },
        }


def _oauth_error(code: str, description: str) -> Response:
    return JSONResponse({"error": code, "error_description": description}, status_code=400)


def _formatted(error: GraphQLError, code: str) -> dict[str, Any]:
    formatted = dict(error.formatted)
    formatted["extensions"] = {**formatted.get("extensions", {}), "code": code}
    return formatted


# --- representations ------------------------------------------------------------------


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_PRODUCTS = ("Linen shirt - M", "Canvas tote", "Wool socks - L")


def line_items(order: SimOrder) -> list[dict[str, Any]]:
    """The order's lines, the same in every rendering: one to three, the total split."""
    count = 1 + order.id % 3
    price = (order.total / count).quantize(Decimal("0.01"))
    return [
        {
            "id": order.id * 4 + k,
            "name": _PRODUCTS[k],
            "quantity": 1,
            "sku": f"SKU-{k + 1}",
            "price": f"{price:.2f}",
        }
        for k in range(count)
    ]


def rest_order(order: SimOrder) -> dict[str, Any]:
    """The order as Shopify's orders/* webhooks send it (the REST shape, trimmed)."""

    def local(moment: datetime) -> str:
        return moment.astimezone(STORE_TIMEZONE).isoformat(timespec="seconds")

    return {
        "id": order.id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order.id}",
        "name": f"#{order.number}",
        "order_number": order.number,
        "number": order.number - 1000,
        "email": order.email,
        "created_at": local(order.created_at),
        "updated_at": local(order.updated_at),
        "processed_at": local(order.created_at),
        "currency": order.currency,
        "total_price": f"{order.total:.2f}",
        "financial_status": "paid" if order.paid else "pending",
        "test": False,
        "line_items": line_items(order),
    }


def graphql_order(order: SimOrder) -> dict[str, Any]:
    money = {"amount": f"{order.total:.2f}", "currencyCode": order.currency}
    return {
        "id": f"gid://shopify/Order/{order.id}",
        "legacyResourceId": str(order.id),
        "name": f"#{order.number}",
        "email": order.email,
        "createdAt": _utc(order.created_at),
        "updatedAt": _utc(order.updated_at),
        "processedAt": _utc(order.created_at),
        "cancelledAt": None,
        "closed": False,
        "test": False,
        "currencyCode": order.currency,
        "displayFinancialStatus": "PAID" if order.paid else "PENDING",
        "totalPriceSet": {"shopMoney": money, "presentmentMoney": money},
        "_order": order,
    }


def _subscription_node(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.gid,
        "legacyResourceId": str(sub.number),
        "topic": sub.topic,
        "uri": sub.uri,
        "format": sub.format,
        "filter": None,
        "includeFields": [],
        "apiVersion": {
            "handle": sub.api_version,
            "displayName": sub.api_version,
            "supported": True,
        },
        "createdAt": _utc(sub.created_at),
        "updatedAt": _utc(sub.created_at),
    }


# --- cost -----------------------------------------------------------------------------


def query_cost(
    schema: GraphQLSchema,
    document: Any,
    operation: OperationDefinitionNode | None,
    variables: dict[str, Any],
) -> int:
    """Shopify's calculated query cost: objects 1, scalars and enums 0, a connection 2 plus
    its page size times one node's cost, every mutation field 10."""
    if operation is None:
        return 0
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    if operation.operation == OperationType.MUTATION:
        return 10 * len(operation.selection_set.selections)
    root = schema.query_type
    assert root is not None

    def size(node: FieldNode) -> int:
        for argument in node.arguments:
            if argument.name.value in ("first", "last"):
                value = argument.value
                if isinstance(value, IntValueNode):
                    return int(value.value)
                if isinstance(value, VariableNode):
                    return int(variables.get(value.name.value) or 0)
        return 0

    def fields(selection_set: SelectionSetNode | None) -> list[FieldNode]:
        found: list[FieldNode] = []
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                found += fields(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                found += fields(fragments[selection.name.value].selection_set)
        return found

    def cost(parent: GraphQLObjectType, selection_set: SelectionSetNode | None) -> int:
        total = 0
        for node in fields(selection_set):
            if node.name.value.startswith("__"):
                continue
            named = get_named_type(parent.fields[node.name.value].type)
            if not isinstance(named, GraphQLObjectType):
                continue
            if named.name.endswith("Connection"):
                per_node = 0
                for child in fields(node.selection_set):
                    if child.name.value == "nodes":
                        item = get_named_type(named.fields["nodes"].type)
                        assert isinstance(item, GraphQLObjectType)
                        per_node = max(per_node, 1 + cost(item, child.selection_set))
                    elif child.name.value == "edges":
                        edge = get_named_type(named.fields["edges"].type)
                        assert isinstance(edge, GraphQLObjectType)
                        per_node = max(per_node, cost(edge, child.selection_set))
                total += 2 + size(node) * per_node
            else:
                total += 1 + cost(named, node.selection_set)
        return total

    return cost(root, operation.selection_set)


# --- resolvers ------------------------------------------------------------------------


def _access_denied(info: GraphQLResolveInfo, scope: str) -> GraphQLError:
    return GraphQLError(
        f"Access denied for {info.field_name} field. Required access: `{scope}` access scope.",
        extensions={
            "code": "ACCESS_DENIED",
            "documentation": "https://shopify.dev/api/usage/access-scopes",
            "requiredAccess": f"`{scope}` access scope.",
        },
    )


def _connection(
    items: list[Any],
    render: Callable[[Any], dict[str, Any]],
    sort_value: Callable[[Any], Any],
    kwargs: dict[str, Any],
    *,
    bulk: bool = False,
) -> dict[str, Any]:
    """A Relay connection page: cursors carry the sort value, so a cursor stays valid when
    its item is gone. In a bulk query, every item (first and last are ignored)."""
    if bulk:
        kwargs = {**kwargs, "first": len(items), "last": None}
    first, last = kwargs.get("first"), kwargs.get("last")
    if (first is None) == (last is None):
        raise GraphQLError("you must provide one of first or last")
    count = first if first is not None else last
    if not 0 <= count <= MAX_PAGE and not bulk:
        raise GraphQLError(f"The page size must be between 0 and {MAX_PAGE}.")
    reverse = bool(kwargs.get("reverse"))
    ordered = sorted(items, key=sort_value, reverse=reverse)
    values = [sort_value(item) for item in ordered]

    def position(cursor: str, inclusive: bool) -> int:
        try:
            anchor = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        except ValueError as exc:
            raise GraphQLError("Invalid cursor.") from exc
        if reverse:
            return sum(1 for v in values if v > anchor or (inclusive and v == anchor))
        return sum(1 for v in values if v < anchor or (inclusive and v == anchor))

    start = position(kwargs["after"], True) if kwargs.get("after") else 0
    end = position(kwargs["before"], False) if kwargs.get("before") else len(ordered)
    window = list(range(start, end))
    chosen = window[:count] if first is not None else window[len(window) - count :]
    edges = [{"cursor": _cursor(values[i]), "node": render(ordered[i])} for i in chosen]
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "pageInfo": {
            "hasNextPage": bool(chosen) and chosen[-1] < len(ordered) - 1,
            "hasPreviousPage": bool(chosen) and chosen[0] > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _resolve_shop(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    store: SimulatedShopify = info.context.store
    return {
        "id": "gid://shopify/Shop/60000001",
        "name": store.name,
        "myshopifyDomain": store.myshopify_domain,
        "email": "owner@example.com",
        "currencyCode": "EUR",
        "ianaTimezone": "America/New_York",
    }


def _resolve_installation(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    app: App = info.context.app
    return {
        "id": f"gid://shopify/AppInstallation/{abs(hash(app.key)) % 10**9}",
        "accessScopes": [{"handle": scope, "description": scope} for scope in app.scopes],
    }


def _resolve_subscriptions(_root: Any, info: GraphQLResolveInfo, **kwargs: Any) -> dict[str, Any]:
    context: _Context = info.context
    subs = context.store.subscriptions_of(context.app)
    if kwargs.get("topics"):
        subs = [sub for sub in subs if sub.topic in kwargs["topics"]]
    if kwargs.get("uri") is not None:
        subs = [sub for sub in subs if sub.uri == kwargs["uri"]]
    if kwargs.get("format") is not None:
        subs = [sub for sub in subs if sub.format == kwargs["format"]]
    key = (
        (lambda sub: [_utc(sub.created_at), sub.number])
        if kwargs.get("sortKey") == "CREATED_AT"
        else (lambda sub: sub.number)
    )
    return _connection(subs, _subscription_node, key, kwargs)


def _resolve_subscription(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    context: _Context = info.context
    for sub in context.store.subscriptions_of(context.app):
        if sub.gid == id:
            return _subscription_node(sub)
    return None


def _visible_orders(info: GraphQLResolveInfo) -> list[SimOrder]:
    context: _Context = info.context
    if READS_ORDERS.isdisjoint(context.app.scopes):
        raise _access_denied(info, "read_orders")
    orders = list(context.store.orders.values())
    if "read_all_orders" not in context.app.scopes:
        # Without read_all_orders an app sees the last 60 days only.
        horizon = context.store.now() - timedelta(days=60)
        orders = [order for order in orders if order.created_at >= horizon]
    return orders


_ORDER_SORT: dict[str, Callable[[SimOrder], Any]] = {
    "ID": lambda order: order.id,
    "CREATED_AT": lambda order: [_utc(order.created_at), order.id],
    "PROCESSED_AT": lambda order: [_utc(order.created_at), order.id],
    "UPDATED_AT": lambda order: [_utc(order.updated_at), order.id],
    "ORDER_NUMBER": lambda order: order.number,
    "NUMBER": lambda order: order.number,
}


def _matches(order: SimOrder, query: str | None) -> bool:
    if not query:
        return True
    terms = [term for term in re.split(r"\s+(?:AND\s+)?", query.strip()) if term]
    for term in terms:
        match = _QUERY_TERM.fullmatch(term)
        if match is None:
            raise ValueError(f"the simulated store does not support the search term {term!r}")
        moment = order.updated_at if match.group(1) == "updated_at" else order.created_at
        value = datetime.fromisoformat(match.group(3).replace("Z", "+00:00"))
        op = match.group(2) or ""
        if not {
            ">=": moment >= value,
            ">": moment > value,
            "<=": moment <= value,
            "<": moment < value,
            "": moment.date() == value.date(),
        }[op]:
            return False
    return True


def _resolve_orders(_root: Any, info: GraphQLResolveInfo, **kwargs: Any) -> dict[str, Any]:
    context: _Context = info.context
    sort = _ORDER_SORT.get(kwargs.get("sortKey") or "PROCESSED_AT", _ORDER_SORT["ID"])
    if context.bulk_ids is not None:
        if READS_ORDERS.isdisjoint(context.app.scopes):
            raise _access_denied(info, "read_orders")
        held = context.store.orders
        orders = [held[order_id] for order_id in context.bulk_ids if order_id in held]
        return _connection(orders, graphql_order, sort, kwargs, bulk=True)
    orders = [order for order in _visible_orders(info) if _matches(order, kwargs.get("query"))]
    if context.bulk_listing is not None:
        context.bulk_listing += [order.id for order in sorted(orders, key=sort)]
        return _connection([], graphql_order, sort, kwargs, bulk=True)
    context.store.order_queries.append(kwargs)
    return _connection(orders, graphql_order, sort, kwargs, bulk=context.bulk)


def _resolve_line_items(parent: Any, info: GraphQLResolveInfo, **kwargs: Any) -> dict[str, Any]:
    order: SimOrder = parent["_order"]
    money_of = order.currency

    def render(item: dict[str, Any]) -> dict[str, Any]:
        money = {"amount": item["price"], "currencyCode": money_of}
        return {
            "id": f"gid://shopify/LineItem/{item['id']}",
            "name": item["name"],
            "quantity": item["quantity"],
            "sku": item["sku"],
            "originalUnitPriceSet": {"shopMoney": money, "presentmentMoney": money},
        }

    return _connection(
        line_items(order), render, lambda item: item["id"], kwargs, bulk=info.context.bulk
    )


def _resolve_orders_count(
    _root: Any, info: GraphQLResolveInfo, limit: int | None = 10_000, query: str | None = None
) -> dict[str, Any]:
    count = sum(1 for order in _visible_orders(info) if _matches(order, query))
    if limit is not None and count > limit:
        return {"count": limit, "precision": "AT_LEAST"}
    return {"count": count, "precision": "EXACT"}


def _bulk_error(message: str, code: str, field_path: list[str] | None) -> dict[str, Any]:
    return {
        "bulkOperation": None,
        "userErrors": [{"field": field_path, "message": message, "code": code}],
    }


def _resolve_bulk_run(
    _root: Any, info: GraphQLResolveInfo, query: str, groupObjects: bool = False
) -> dict[str, Any]:
    context: _Context = info.context
    store, app = context.store, context.app
    running = [
        op
        for op in store.bulk_of(app)
        if store.refresh(op).status in ("CREATED", "RUNNING", "CANCELING")
    ]
    if len(running) >= MAX_BULK_QUERIES:
        return _bulk_error(
            "Bulk operations limit reached. Please try again later.", "LIMIT_REACHED", None
        )
    try:
        document = parse(query)
    except GraphQLError as error:
        return _bulk_error(f"Invalid bulk query: {error.message}", "INVALID", ["query"])
    problem = _bulk_query_problem(document)
    if problem is not None:
        return _bulk_error(problem, "INVALID", ["query"])
    op = BulkOp(
        number=store._next_bulk,
        app=app,
        query=query,
        group=groupObjects,
        created_at=store.now(),
        fail_with=store.bulk_fail,
    )
    store._next_bulk += 1
    store.bulk_operations[op.number] = op
    op.work = asyncio.get_running_loop().create_task(_run_bulk_query(context, op, document))
    return {"bulkOperation": store.bulk_node(op), "userErrors": []}


def _bulk_query_problem(document: Any) -> str | None:
    """Why Shopify would refuse this bulk query, if it would."""
    invalid = validate(schema(), document)
    if invalid:
        return f"Invalid bulk query: {invalid[0].message}"
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        return "Bulk queries must contain exactly one query operation."
    root = schema().query_type
    assert root is not None
    top = [sel for sel in operations[0].selection_set.selections if isinstance(sel, FieldNode)]
    if len(top) != 1:
        return "Bulk queries must select exactly one top-level field."
    connections: list[int] = []

    def walk(parent: GraphQLObjectType, node: FieldNode, depth: int) -> str | None:
        named = get_named_type(parent.fields[node.name.value].type)
        if not isinstance(named, GraphQLObjectType):
            return None
        if named.name.endswith("Connection"):
            depth += 1
            connections.append(depth)
        for child in node.selection_set.selections if node.selection_set else ():
            if not isinstance(child, FieldNode) or child.name.value.startswith("__"):
                continue
            found = walk(named, child, depth)
            if found:
                return found
            if child.name.value == "node" or (
                child.name.value == "nodes" and named.name.endswith("Connection")
            ):
                item = get_named_type(named.fields[child.name.value].type)
                assert isinstance(item, GraphQLObjectType)
                if _has_nested_connection(item, child) and not any(
                    isinstance(sel, FieldNode) and sel.name.value == "id" and sel.alias is None
                    for sel in child.selection_set.selections
                    if child.selection_set
                ):
                    return (
                        f"The parent '{child.name.value}' field for a nested connection must "
                        "select the 'id' field without an alias and must be of 'ID' return type."
                    )
        return None

    found = walk(root, top[0], 0)
    if found:
        return found
    if not connections or connections[0] != 1:
        return "Bulk queries must contain at least one connection."
    if max(connections) > MAX_BULK_DEPTH:
        return (
            f"Bulk queries cannot contain connections with a nesting depth greater than "
            f"{MAX_BULK_DEPTH}."
        )
    if len(connections) > MAX_BULK_CONNECTIONS:
        return f"Bulk queries cannot contain more than {MAX_BULK_CONNECTIONS} connections."
    return None


def _has_nested_connection(item: GraphQLObjectType, node: FieldNode) -> bool:
    for child in node.selection_set.selections if node.selection_set else ():
        if isinstance(child, FieldNode) and child.name.value in item.fields:
            named = get_named_type(item.fields[child.name.value].type)
            if isinstance(named, GraphQLObjectType) and named.name.endswith("Connection"):
                return True
    return False


async def _run_bulk_query(context: _Context, op: BulkOp, document: Any) -> None:
    """Work the query out in the background, a slice of its orders at a time, into the
    operation's JSONL lines."""
    listing: list[int] = []
    probe = replace(context, bulk=True, bulk_listing=listing)
    try:
        if _failed(op, execute(schema(), document, context_value=probe)):
            return
        deferred: list[bytes] = []
        for start in range(0, len(listing), BULK_SLICE):
            await asyncio.sleep(0)  # the store goes on answering meanwhile
            ids = listing[start : start + BULK_SLICE]
            part = replace(context, bulk=True, bulk_ids=ids)
            result = execute(schema(), document, context_value=part)
            if _failed(op, result):
                return
            assert isinstance(result, ExecutionResult)
            assert result.data is not None
            for node in _connection_nodes(next(iter(result.data.values()))):
                own, children = _flatten(node, None)
                op.lines.append(own)
                op.roots += 1
                if op.group:
                    op.lines += children
                else:
                    # Ungrouped, children come later, among other orders' lines.
                    deferred += children
                    if op.roots % 3 == 0:
                        op.lines += deferred
                        deferred = []
        op.lines += deferred
    finally:
        op.ready = True


def _failed(op: BulkOp, result: Any) -> bool:
    assert isinstance(result, ExecutionResult)
    if not result.errors:
        return False
    codes = {(error.extensions or {}).get("code") for error in result.errors}
    op.fail_with = "ACCESS_DENIED" if "ACCESS_DENIED" in codes else "INTERNAL_SERVER_ERROR"
    op.lines, op.roots = [], 0
    return True


def _connection_nodes(connection: Any) -> list[dict[str, Any]]:
    if not isinstance(connection, dict):
        return []
    if "edges" in connection:
        return [edge["node"] for edge in connection["edges"] if edge.get("node") is not None]
    return list(connection.get("nodes") or [])


def _flatten(node: dict[str, Any], parent: str | None) -> tuple[bytes, list[bytes]]:
    """The node's own line, and its nested connections' lines (each naming it)."""
    own: dict[str, Any] = {}
    children: list[bytes] = []
    for key, value in node.items():
        if isinstance(value, dict) and ("edges" in value or "nodes" in value):
            for child in _connection_nodes(value):
                line, grandchildren = _flatten(child, node.get("id"))
                children += [line, *grandchildren]
        else:
            own[key] = value
    if parent is not None:
        own["__parentId"] = parent
    return json.dumps(own, separators=(",", ":")).encode(), children


def _bulk_by_id(info: GraphQLResolveInfo, id: str) -> BulkOp | None:
    context: _Context = info.context
    for op in context.store.bulk_of(context.app):
        if op.gid == id:
            return op
    return None


def _resolve_bulk_operation(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    op = _bulk_by_id(info, id)
    return None if op is None else info.context.store.bulk_node(op)


def _resolve_current_bulk(
    _root: Any, info: GraphQLResolveInfo, type: str = "QUERY"
) -> dict[str, Any] | None:
    context: _Context = info.context
    ops = context.store.bulk_of(context.app)
    if type != "QUERY" or not ops:
        return None
    return context.store.bulk_node(max(ops, key=lambda op: op.number))


def _resolve_bulk_cancel(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any]:
    op = _bulk_by_id(info, id)
    if op is None:
        return {
            "bulkOperation": None,
            "userErrors": [_user_error(["id"], "Bulk operation does not exist")],
        }
    store: SimulatedShopify = info.context.store
    store.refresh(op)
    if op.status not in ("CREATED", "RUNNING"):
        return {
            "bulkOperation": store.bulk_node(op),
            "userErrors": [
                _user_error(
                    ["id"], f"A bulk operation cannot be canceled when it is {op.status.lower()}"
                )
            ],
        }
    op.status = "CANCELING"
    node = store.bulk_node(op)
    node["status"] = "CANCELING"
    return {"bulkOperation": node, "userErrors": []}


def _resolve_order(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    for order in _visible_orders(info):
        if f"gid://shopify/Order/{order.id}" == id:
            return graphql_order(order)
    return None


def _user_error(field_path: list[str], message: str) -> dict[str, Any]:
    return {"field": field_path, "message": message}


def _resolve_create(
    _root: Any, info: GraphQLResolveInfo, topic: str, webhookSubscription: dict[str, Any]
) -> dict[str, Any]:
    context: _Context = info.context
    store, app = context.store, context.app
    if topic.startswith("ORDERS_"):
        if READS_ORDERS.isdisjoint(app.scopes):
            raise _access_denied(info, "read_orders")
        if not app.protected_data:
            return {
                "webhookSubscription": None,
                "userErrors": [
                    _user_error(
                        ["webhookSubscription"],
                        "This app is not approved to subscribe to webhook topics containing "
                        "protected customer data.",
                    )
                ],
            }
    uri = webhookSubscription.get("uri") or webhookSubscription.get("callbackUrl")
    field_path = ["webhookSubscription", "uri"]
    if not uri:
        return {
            "webhookSubscription": None,
            "userErrors": [_user_error(field_path, "Address can't be blank")],
        }
    if not str(uri).startswith("https://") or len(str(uri)) <= len("https://"):
        return {
            "webhookSubscription": None,
            "userErrors": [_user_error(field_path, "Address protocol is not supported, use https")],
        }
    if any(sub.topic == topic and sub.uri == uri for sub in store.subscriptions_of(app)):
        return {
            "webhookSubscription": None,
            "userErrors": [
                _user_error(field_path, "Address for this topic has already been taken")
            ],
        }
    sub = Subscription(
        number=store._next_subscription,
        app=app,
        topic=topic,
        uri=str(uri),
        format=webhookSubscription.get("format") or "JSON",
        api_version=context.version,
        created_at=store.now(),
    )
    store._next_subscription += 1
    store.subscriptions[sub.number] = sub
    return {"webhookSubscription": _subscription_node(sub), "userErrors": []}


def _resolve_delete(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any]:
    context: _Context = info.context
    for sub in context.store.subscriptions_of(context.app):
        if sub.gid == id:
            del context.store.subscriptions[sub.number]
            return {"deletedWebhookSubscriptionId": id, "userErrors": []}
    return {
        "deletedWebhookSubscriptionId": None,
        "userErrors": [_user_error(["id"], "Webhook subscription does not exist")],
    }


def _bind_resolvers(schema: GraphQLSchema) -> None:
    query, mutation = schema.query_type, schema.mutation_type
    assert query is not None
    assert mutation is not None
    for name, resolve in {
        "shop": _resolve_shop,
        "currentAppInstallation": _resolve_installation,
        "webhookSubscriptions": _resolve_subscriptions,
        "webhookSubscription": _resolve_subscription,
        "orders": _resolve_orders,
        "order": _resolve_order,
        "ordersCount": _resolve_orders_count,
        "bulkOperation": _resolve_bulk_operation,
        "currentBulkOperation": _resolve_current_bulk,
    }.items():
        query.fields[name].resolve = resolve
    mutation.fields["webhookSubscriptionCreate"].resolve = _resolve_create
    mutation.fields["webhookSubscriptionDelete"].resolve = _resolve_delete
    mutation.fields["bulkOperationRunQuery"].resolve = _resolve_bulk_run
    mutation.fields["bulkOperationCancel"].resolve = _resolve_bulk_cancel
    order_type = schema.type_map["Order"]
    assert isinstance(order_type, GraphQLObjectType)
    order_type.fields["lineItems"].resolve = _resolve_line_items
