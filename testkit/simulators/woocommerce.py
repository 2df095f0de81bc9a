"""A simulated WooCommerce store: WordPress's REST routing (/wp-json/ or, without pretty
permalinks, ?rest_route=), WooCommerce's REST authentication, orders and webhooks.

Behaviour follows WooCommerce's own code (class-wc-rest-authentication.php, the webhooks
controller, class-wc-webhook.php and its data store): Basic auth is tried only over HTTPS; a
known key with the wrong secret is a 401 `woocommerce_rest_authentication_error`, an
unknown key is anonymous and gets the route's own permission error; a key's read/write
permission is checked before the route; creating a webhook pings its delivery URL (the
answer changes nothing but `pending_delivery`, and every later save of an active pending
webhook pings again); a delivery succeeds with 200-302; after more than 5 failures in a row
the webhook is disabled; DELETE without force is a 501.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from testkit.simulators.base import SimOrder, SimulatedStore

T = TypeVar("T")
USER_AGENT = "WooCommerce/10.3.0 Hookshot (WordPress/6.8.3)"
SITE_TIMEZONE = timezone(timedelta(hours=1))
MAX_FAILURES = 5
_RESOURCES = ("coupon", "customer", "order", "product")
_EVENTS = ("created", "updated", "deleted", "restored")
_HOOKS = {
    "order.created": ["woocommerce_new_order"],
    "order.updated": [
        "woocommerce_update_order",
        "woocommerce_order_refunded",
        "woocommerce_delete_order_refund",
    ],
    "order.deleted": ["wp_trash_post", "woocommerce_trash_order"],
    "order.restored": ["untrashed_post", "woocommerce_untrash_order"],
}
NOT_FOUND_PAGE = (
    "<!doctype html><title>Page not found</title><h1>Oops! That page can't be found.</h1>"
)


@dataclass
class Key:
    consumer_key: str
    consumer_secret: str
    permissions: Literal["read", "write", "read_write"] = "read_write"
    # Whether the key's user may manage WooCommerce (an administrator or shop manager).
    can_manage: bool = True


@dataclass
class Webhook:
    id: int
    name: str
    topic: str
    delivery_url: str
    secret: str
    status: str = "active"
    failure_count: int = 0
    pending_delivery: bool = True
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Attempt:
    webhook: Webhook
    status: int | None
    disabled: bool = False


class RestError(Exception):
    def __init__(self, code: str, message: str, status: int, **data: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.data = code, message, status, data

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(
            {
                "code": self.code,
                "message": self.message,
                "data": {"status": self.status, **self.data},
            },
            status_code=self.status,
            headers=headers,
        )


class SimulatedWooCommerce(SimulatedStore):
    def __init__(
        self,
        domain: str,
        *,
        name: str = "Simulated Woo Store",
        seed: int = 2,
        order_count: int = 5,
        pretty_permalinks: bool = True,
    ) -> None:
        super().__init__(domain, seed=seed, order_count=order_count, first_order_id=700)
        self.name = name
        self.pretty_permalinks = pretty_permalinks
        # False: plain WordPress, no WooCommerce routes.
        self.woocommerce_active = True
        # False: a security plugin closes the REST index to visitors.
        self.index_open = True
        self.keys: list[Key] = []
        self.webhooks: dict[int, Webhook] = {}
        self._next_webhook = 14
        self.pings: list[tuple[int, int | None]] = []
        self.paths: list[str] = []  # every path asked for, with the rest_route if any
        # The query of every order listing served, in order.
        self.order_queries: list[dict[str, str]] = []
        self._salt = secrets.token_bytes(16)

    def add_key(
        self,
        permissions: Literal["read", "write", "read_write"] = "read_write",
        *,
        can_manage: bool = True,
    ) -> Key:
        key = Key(
            "ck_" + secrets.token_hex(20), "cs_" + secrets.token_hex(20), permissions, can_manage
        )
        self.keys.append(key)
        return key

    # --- deliveries -------------------------------------------------------------------

    async def fire(self, topic: str, order: SimOrder) -> list[Attempt]:
        """Deliver `topic` for `order` to every active webhook on it, once (WooCommerce
        never retries). The payload is built now, from the order as it is now."""
        payload = {"id": order.id} if topic == "order.deleted" else self.rest_order(order)
        body = _wp_json(payload)
        resource, _, event = topic.partition(".")
        attempts = []
        for hook in list(self.webhooks.values()):
            if hook.topic != topic or hook.status != "active":
                continue
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-WC-Webhook-Source": f"https://{self.domain}/",
                "X-WC-Webhook-Topic": topic,
                "X-WC-Webhook-Resource": resource,
                "X-WC-Webhook-Event": event,
                "X-WC-Webhook-Signature": base64.b64encode(
                    hmac.new(hook.secret.encode(), body, hashlib.sha256).digest()
                ).decode(),
                "X-WC-Webhook-ID": str(hook.id),
                # wp_hash(id . time()): two deliveries within a second share it.
                "X-WC-Webhook-Delivery-ID": hmac.new(
                    self._salt, f"{hook.id}{int(self.now().timestamp())}".encode(), hashlib.md5
                ).hexdigest(),
            }
            status = await self._post(hook.delivery_url, body, headers, wait=60.0)
            if status is not None and 200 <= status < 303:
                hook.failure_count = 0
                await self._save(hook)
                attempts.append(Attempt(hook, status))
                continue
            # WC_Webhook::failed_delivery: more than 5 failures in a row disables it.
            if hook.failure_count > MAX_FAILURES:
                hook.status = "disabled"
            else:
                hook.failure_count += 1
            await self._save(hook)
            attempts.append(Attempt(hook, status, disabled=hook.status == "disabled"))
        return attempts

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], *, wait: float
    ) -> int | None:
        try:
            response = await self.delivery_client.post(
                url, content=body, headers=headers, timeout=wait, follow_redirects=False
            )
        except httpx.HTTPError:
            return None
        return response.status_code

    async def _ping(self, hook: Webhook) -> None:
        # WC_Webhook::deliver_ping: a form body, no X-WC headers, success is exactly 200.
        status = await self._post(
            hook.delivery_url,
            f"webhook_id={hook.id}".encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT},
            wait=5.0,
        )
        self.pings.append((hook.id, status))
        if status == 200:
            hook.pending_delivery = False

    async def _save(self, hook: Webhook, *, url_changed: bool = False) -> None:
        # WC_Webhook_Data_Store::update pings an active webhook whose URL changed or whose
        # first ping has not succeeded yet.
        hook.modified = self.now()
        if hook.status == "active" and (url_changed or hook.pending_delivery):
            await self._ping(hook)

    # --- HTTP -------------------------------------------------------------------------

    async def handle(self, request: Request, path: str) -> Response:
        route: str | None = None
        if path.startswith("/wp-json") and self.pretty_permalinks:
            route = path[len("/wp-json") :] or "/"
        elif path in ("/", "/index.php") and "rest_route" in request.query_params:
            route = request.query_params["rest_route"] or "/"
        self.paths.append(
            path if route is None or path.startswith("/wp-json") else f"{path}?rest_route={route}"
        )
        if route is None:
            return HTMLResponse(NOT_FOUND_PAGE, status_code=404)
        try:
            return await self._rest(request, "/" + route.strip("/"))
        except RestError as error:
            headers = None
            if error.code == "woocommerce_rest_authentication_error" and error.status == 401:
                headers = {
                    "WWW-Authenticate": 'Basic realm="WooCommerce API. Use a consumer key in the '
                    'username field and a consumer secret in the password field."'
                }
            return error.response(headers)

    def _authenticate(self, request: Request) -> Key | None:
        """WC_REST_Authentication: Basic auth (or the key in the query) over HTTPS only;
        over HTTP only OAuth 1.0a, which this simulation does not take, so: anonymous."""
        if request.url.scheme != "https":
            return None
        key_id = request.query_params.get("consumer_key", "")
        secret = request.query_params.get("consumer_secret", "")
        if not (key_id and secret):
            scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "basic":
                try:
                    key_id, _, secret = base64.b64decode(encoded).decode().partition(":")
                except ValueError:
                    key_id = secret = ""
        if not (key_id and secret):
            return None
        key = next((k for k in self.keys if k.consumer_key == key_id), None)
        if key is None:
            return None
        if not hmac.compare_digest(key.consumer_secret.encode(), secret.encode()):
            raise RestError(
                "woocommerce_rest_authentication_error", "Consumer secret is invalid.", 401
            )
        return key

    async def _rest(self, request: Request, route: str) -> Response:
        method = request.method
        if route == "/":
            if not self.index_open:
                raise RestError("rest_not_logged_in", "You are not currently logged in.", 401)
            return JSONResponse(self._index())
        key = None
        if route.startswith("/wc/"):
            key = self._authenticate(request)
            if key is not None:
                _check_permissions(key, method)
        handler, args = self._route(method, route)
        if handler is None:
            raise RestError(
                "rest_no_route", "No route was found matching the URL and request method.", 404
            )
        return await handler(request, key, **args)

    def _route(self, method: str, route: str) -> tuple[Any, dict[str, int]]:
        if not self.woocommerce_active:
            return None, {}
        table: list[tuple[str, str, Any]] = [
            ("GET", r"/wc/v3/orders", self._list_orders),
            ("GET", r"/wc/v3/orders/(?P<id>\d+)", self._get_order),
            ("GET", r"/wc/v3/webhooks", self._list_webhooks),
            ("POST", r"/wc/v3/webhooks", self._create_webhook),
            ("GET", r"/wc/v3/webhooks/(?P<id>\d+)", self._get_webhook),
            ("PUT|POST|PATCH", r"/wc/v3/webhooks/(?P<id>\d+)", self._update_webhook),
            ("DELETE", r"/wc/v3/webhooks/(?P<id>\d+)", self._delete_webhook),
        ]
        for methods, pattern, handler in table:
            match = re.fullmatch(pattern, route)
            if match and method in methods.split("|"):
                return handler, {k: int(v) for k, v in match.groupdict().items()}
        return None, {}

    def _index(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": "Just another WordPress site",
            "url": f"https://{self.domain}",
            "home": f"https://{self.domain}",
            "gmt_offset": "1",
            "timezone_string": "Europe/Amsterdam",
            "namespaces": ["oembed/1.0", "wp/v2", *(["wc/v3"] if self.woocommerce_active else [])],
            "authentication": {},
            "routes": {},
        }

    # --- handlers ---------------------------------------------------------------------

    async def _list_orders(self, request: Request, key: Key | None) -> Response:
        _allowed(key, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        params = request.query_params
        self.order_queries.append(dict(params))
        per_page, page = _page_params(params, default=10)
        orders = [order for order in self.orders.values() if not order.trashed]
        gmt = params.get("dates_are_gmt", "false").lower() in ("1", "true")
        for name, attribute, after in (
            ("modified_after", "updated_at", True),
            ("modified_before", "updated_at", False),
            ("after", "created_at", True),
            ("before", "created_at", False),
        ):
            if name in params:
                limit = _date_param(name, params[name], gmt)
                orders = [
                    o
                    for o in orders
                    if (getattr(o, attribute) > limit if after else getattr(o, attribute) < limit)
                ]
        orderby = params.get("orderby", "date")
        sort = {
            "date": lambda o: (o.created_at, o.id),
            "modified": lambda o: (o.updated_at, o.id),
            "id": lambda o: o.id,
        }.get(orderby)
        if sort is None:
            raise _invalid_param("orderby", "orderby is not one of date, id, modified.")
        # Only the orders up to the page asked for are put in order: a store of 100,000
        # would otherwise sort them all for every page (the keys are unique: same result).
        pick = heapq.nlargest if params.get("order", "desc") == "desc" else heapq.nsmallest
        first = pick(page * per_page, orders, key=sort)
        return self._page(request, first, per_page, page, self.rest_order, total=len(orders))

    async def _get_order(self, request: Request, key: Key | None, id: int) -> Response:
        _allowed(key, "woocommerce_rest_cannot_view", "Sorry, you cannot view this resource.")
        order = self.orders.get(id)
        if order is None:
            raise RestError("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404)
        return JSONResponse(self.rest_order(order))

    async def _list_webhooks(self, request: Request, key: Key | None) -> Response:
        _allowed(key, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        per_page, page = _page_params(request.query_params, default=10)
        status = request.query_params.get("status", "all")
        if status not in ("all", "active", "paused", "disabled"):
            raise _invalid_param(
                "status", "status is not one of all, active, paused, and disabled."
            )
        hooks = [h for h in self.webhooks.values() if status in ("all", h.status)]
        hooks.sort(
            key=lambda h: (h.created, h.id),
            reverse=request.query_params.get("order", "desc") == "desc",
        )
        return self._page(request, hooks, per_page, page, self._webhook_json)

    async def _create_webhook(self, request: Request, key: Key | None) -> Response:
        _allowed(
            key, "woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources."
        )
        body = await _body(request)
        topic = str(body.get("topic") or "").lower()
        if not _valid_topic(topic):
            raise RestError(
                "woocommerce_rest_shop_webhook_invalid_topic",
                "Webhook topic is required and must be valid.",
                400,
            )
        url = str(body.get("delivery_url") or "")
        if not re.fullmatch(r"https?://[^\s/$.?#].[^\s]*", url):
            raise RestError(
                "woocommerce_rest_shop_webhook_invalid_delivery_url",
                "Webhook delivery URL must be a valid URL starting with http:// or https://.",
                400,
            )
        hook = Webhook(
            id=self._next_webhook,
            name=str(body.get("name") or f"Webhook created on {self.now():%b %d, %Y @ %I:%M %p}"),
            topic=topic,
            delivery_url=url,
            secret=str(body.get("secret") or secrets.token_urlsafe(38)[:50]),
            # The controller saves a webhook made over REST as active, whatever was asked.
            status="active",
            created=self.now(),
            modified=self.now(),
        )
        self._next_webhook += 1
        self.webhooks[hook.id] = hook
        answer = self._webhook_json(hook, edit=True)
        # The ping's outcome changes nothing in the answer: the webhook exists either way.
        await self._ping(hook)
        return JSONResponse(answer, status_code=201)

    async def _get_webhook(self, request: Request, key: Key | None, id: int) -> Response:
        _allowed(key, "woocommerce_rest_cannot_view", "Sorry, you cannot view this resource.")
        hook = self.webhooks.get(id)
        if hook is None:
            raise RestError("woocommerce_rest_shop_webhook_invalid_id", "ID is invalid.", 400)
        return JSONResponse(self._webhook_json(hook))

    async def _update_webhook(self, request: Request, key: Key | None, id: int) -> Response:
        _allowed(
            key, "woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource."
        )
        hook = self.webhooks.get(id)
        if hook is None:
            raise RestError("woocommerce_rest_shop_webhook_invalid_id", "ID is invalid.", 400)
        body = await _body(request)
        url_changed = False
        if body.get("topic"):
            if not _valid_topic(str(body["topic"]).lower()):
                raise RestError(
                    "woocommerce_rest_shop_webhook_invalid_topic",
                    "Webhook topic must be valid.",
                    400,
                )
            hook.topic = str(body["topic"]).lower()
        if body.get("delivery_url"):
            url_changed = body["delivery_url"] != hook.delivery_url
            hook.delivery_url = str(body["delivery_url"])
        if body.get("secret"):
            hook.secret = str(body["secret"])
        if body.get("status"):
            if str(body["status"]).lower() not in ("active", "paused", "disabled"):
                raise RestError(
                    "woocommerce_rest_shop_webhook_invalid_status",
                    "Webhook status must be valid.",
                    400,
                )
            # Re-enabling keeps the failure count: the next failure disables it again.
            hook.status = str(body["status"]).lower()
        if body.get("name"):
            hook.name = str(body["name"])
        await self._save(hook, url_changed=url_changed)
        return JSONResponse(self._webhook_json(hook, edit=True))

    async def _delete_webhook(self, request: Request, key: Key | None, id: int) -> Response:
        _allowed(
            key,
            "woocommerce_rest_cannot_delete",
            "Sorry, you are not allowed to delete this resource.",
        )
        if request.query_params.get("force", "false").lower() not in ("1", "true"):
            raise RestError(
                "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing.", 501
            )
        hook = self.webhooks.pop(id, None)
        if hook is None:
            raise RestError("woocommerce_rest_shop_webhook_invalid_id", "Invalid ID.", 404)
        return JSONResponse(self._webhook_json(hook, edit=True))

    # --- representations --------------------------------------------------------------

    def _page(
        self,
        request: Request,
        items: list[T],
        per_page: int,
        page: int,
        render: Callable[[T], dict[str, Any]],
        *,
        total: int | None = None,
    ) -> Response:
        """Page `page` of a listing whose first items are `items` (all of them, unless
        `total` says how many there are)."""
        total = len(items) if total is None else total
        pages = math.ceil(total / per_page) if total else 0
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        if page < pages:
            headers["Link"] = f'<{request.url.include_query_params(page=page + 1)}>; rel="next"'
        shown = items[(page - 1) * per_page : page * per_page]
        return JSONResponse([render(item) for item in shown], headers=headers)

    def _webhook_json(self, hook: Webhook, *, edit: bool = False) -> dict[str, Any]:
        resource, _, event = hook.topic.partition(".")
        data: dict[str, Any] = {
            "id": hook.id,
            "name": hook.name,
            "status": hook.status,
            "topic": hook.topic,
            "resource": resource,
            "event": event,
            "hooks": _HOOKS.get(hook.topic, []),
            "delivery_url": hook.delivery_url,
            "date_created": _local(hook.created),
            "date_created_gmt": _gmt(hook.created),
            "date_modified": _local(hook.modified),
            "date_modified_gmt": _gmt(hook.modified),
            "_links": {
                "self": [{"href": f"https://{self.domain}/wp-json/wc/v3/webhooks/{hook.id}"}],
                "collection": [{"href": f"https://{self.domain}/wp-json/wc/v3/webhooks"}],
            },
        }
        if edit:
            data["secret"] = hook.secret
        return data

    def rest_order(self, order: SimOrder) -> dict[str, Any]:
        """The order as wc/v3 shows it (and its webhooks send it), trimmed."""
        return {
            "id": order.id,
            "parent_id": 0,
            "number": str(order.id),
            "order_key": f"wc_order_{order.id:x}",
            "status": "trash" if order.trashed else ("processing" if order.paid else "pending"),
            "currency": order.currency,
            "version": "10.3.0",
            "prices_include_tax": True,
            "date_created": _local(order.created_at),
            "date_created_gmt": _gmt(order.created_at),
            "date_modified": _local(order.updated_at),
            "date_modified_gmt": _gmt(order.updated_at),
            "total": f"{order.total:.2f}",
            "billing": {"email": order.email, "country": "NL"},
            "line_items": [
                {
                    "id": order.id * 10,
                    "name": "Espresso cup",
                    "quantity": 1,
                    "total": f"{order.total:.2f}",
                }
            ],
            "meta_data": [],
        }


def _wp_json(payload: Any) -> bytes:
    # wp_json_encode() as PHP's json_encode: compact, non-ASCII and slashes escaped.
    return (
        json.dumps(payload, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()
    )


def _local(moment: datetime) -> str:
    return moment.astimezone(SITE_TIMEZONE).strftime("%Y-%m-%dT%H:%M:%S")


def _gmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _check_permissions(key: Key, method: str) -> None:
    if method in ("GET", "HEAD") and key.permissions not in ("read", "read_write"):
        raise RestError(
            "woocommerce_rest_authentication_error",
            "The API key provided does not have read permissions.",
            401,
        )
    if method in ("POST", "PUT", "PATCH", "DELETE") and key.permissions not in (
        "write",
        "read_write",
    ):
        raise RestError(
            "woocommerce_rest_authentication_error",
            "The API key provided does not have write permissions.",
            401,
        )


def _allowed(key: Key | None, code: str, message: str) -> None:
    # rest_authorization_required_code(): 401 for nobody, 403 for a user without the right.
    if key is None:
        raise RestError(code, message, 401)
    if not key.can_manage:
        raise RestError(code, message, 403)


def _invalid_param(name: str, detail: str) -> RestError:
    return RestError(
        "rest_invalid_param", f"Invalid parameter(s): {name}", 400, params={name: detail}
    )


def _page_params(params: Any, *, default: int) -> tuple[int, int]:
    try:
        per_page = int(params.get("per_page", default))
    except ValueError:
        raise _invalid_param("per_page", "per_page is not of type integer.") from None
    if not 1 <= per_page <= 100:
        raise _invalid_param(
            "per_page", "per_page must be between 1 (inclusive) and 100 (inclusive)"
        )
    try:
        page = int(params.get("page", 1))
    except ValueError:
        raise _invalid_param("page", "page is not of type integer.") from None
    if page < 1:
        raise _invalid_param("page", "page must be greater than or equal to 1")
    return per_page, page


def _date_param(name: str, value: str, gmt: bool) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid_param(name, f"{name} is not a valid date.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC if gmt else SITE_TIMEZONE)
    return moment


def _valid_topic(topic: str) -> bool:
    resource, _, event = topic.partition(".")
    return (resource in _RESOURCES and event in _EVENTS) or (resource == "action" and bool(event))


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise RestError("rest_invalid_json", "Invalid JSON body passed.", 400) from None
        return data if isinstance(data, dict) else {}
    return dict(parse_qsl(raw.decode()))
