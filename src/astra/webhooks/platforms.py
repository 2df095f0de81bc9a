"""What Shopify and WooCommerce send with an order webhook, and what Astra keeps of it.

Pure functions over headers and bytes: header names, topics, the shop check, the
idempotency key, and the few order fields stored next to the raw payload. Header
lookups use lower-case names: Starlette's Headers (and HTTP/2) are case-insensitive.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, ClassVar

import orjson

from astra.orders.writer import OrderVersion
from astra.stores.domains import InvalidDomain, normalize_domain


class OrderAction(StrEnum):
    upsert = "upsert"
    restore = "restore"  # WooCommerce took the order out of the trash
    delete = "delete"
    ignore = "ignore"


class MalformedDelivery(ValueError):
    """Signed, but not something Astra can store; str() says why."""


class RefusedDelivery(ValueError):
    """Signed, but not to be acted on (a replay under another topic, too old); str() says
    why, for the delivery log. Answered 2xx: sending it again would change nothing."""


# Only the body is signed, never the headers: the topic is believed only when the body has
# the shape that topic's payload has. A delete's payload is the order id alone on both
# platforms; every other order topic sends the whole order.
_DELETE_SHAPE = (
    "A delete carries only the order's id; this body is a whole order, so it is not a delete."
)
_ORDER_SHAPE = (
    "The body holds only an order id, as a delete does: it is not a version of the order."
)


@dataclass(frozen=True, slots=True)
class DeliveryHeaders:
    signature: str | None
    topic: str | None
    delivery_id: str | None
    # Who says they sent it: Shopify's shop domain, WooCommerce's site URL.
    source: str | None
    # When the platform says the event happened (Shopify's X-Shopify-Triggered-At).
    triggered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    data: dict[str, Any]
    # What PostgreSQL stores as JSONB: the body itself, so large numbers keep every digit.
    json_text: str


_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")
_MAX_TOPIC = 100
_MAX_DELIVERY_ID = 200
_MAX_ORDER_ID = 64
_MAX_AMOUNT = Decimal(10) ** 15
_AMOUNT_STEP = Decimal("0.000001")
_WOO_PING = re.compile(rb"webhook_id=[0-9]+")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    return value.strip() or None


def _token(value: str | None, what: str, max_length: int) -> str:
    if value is None:
        raise MalformedDelivery(f"The {what} header is missing.")
    if len(value) > max_length or not _HEADER_TOKEN.fullmatch(value):
        raise MalformedDelivery(f"The {what} header is not valid.")
    return value


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def parse_payload(body: bytes) -> Payload:
    """Parse a verified body; only JSON objects are deliveries."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedDelivery("The body is not JSON.") from None
    if not isinstance(data, dict):
        raise MalformedDelivery("The body is not a JSON object.")
    if b"\\u0000" in body:
        # PostgreSQL text and JSONB cannot hold NUL; keep everything else.
        data = _without_nul(data)
        return Payload(data, orjson.dumps(data).decode())
    return Payload(data, body.decode())


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _order_id(payload: Mapping[str, Any]) -> str:
    value = payload.get("id")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _HEADER_TOKEN.fullmatch(value) and len(value) <= _MAX_ORDER_ID:
        return value
    raise MalformedDelivery("The payload has no order id.")


def _text(value: Any, max_length: int) -> str | None:
    """A short label from the payload, or None when it is absent or unusable."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    label = value.strip()
    if not label or len(label) > max_length or "\x00" in label:
        return None
    return label


def _amount(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or abs(amount) >= _MAX_AMOUNT:
        return None
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        amount = amount.quantize(_AMOUNT_STEP)
    return amount


def _timestamp(value: Any) -> datetime | None:
    """An ISO 8601 time in UTC; without an offset it is UTC (WooCommerce's *_gmt fields).
    None when absent, unreadable, or outside what a UTC datetime holds (year 1 or 9999 with
    an extreme offset): the database could not store it either."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


class PlatformRules(ABC):
    # Deliveries the platform says it triggered longer ago than this are refused: past its
    # own retry window, such a request is a replay, not a retry.
    max_age: ClassVar[timedelta | None] = None

    @abstractmethod
    def read_headers(self, headers: Mapping[str, str]) -> DeliveryHeaders: ...

    @abstractmethod
    def source_matches(self, source: str | None, domain: str) -> bool:
        """Whether the sender names the integration's own store."""

    @abstractmethod
    def topic_action(self, topic: str, payload: Mapping[str, Any]) -> OrderAction:
        """What the topic asks for, before the body's shape is checked."""

    def action(self, topic: str, payload: Mapping[str, Any]) -> OrderAction:
        """What the delivery does, believed only when the signed body has the shape of the
        (unsigned) topic's payload; RefusedDelivery otherwise."""
        action = self.topic_action(topic, payload)
        if action is OrderAction.ignore:
            return action
        _order_id(payload)  # a signed body without a usable id is malformed, whatever its topic
        whole_order = any(key != "id" for key in payload)
        if action is OrderAction.delete and whole_order:
            raise RefusedDelivery(_DELETE_SHAPE)
        if action in (OrderAction.upsert, OrderAction.restore) and not whole_order:
            raise RefusedDelivery(_ORDER_SHAPE)
        return action

    @abstractmethod
    def order_version(self, payload: Payload) -> OrderVersion: ...

    def is_ping(self, headers: Mapping[str, str], body: bytes) -> bool:
        """An unsigned hello that must be answered 200 and stored nowhere."""
        return False

    def topic(self, sent: DeliveryHeaders) -> str:
        return _token(sent.topic, "topic", _MAX_TOPIC)

    def idempotency_key(self, sent: DeliveryHeaders, body: bytes) -> str:
        """What makes two requests the same delivery."""
        if sent.delivery_id is None:
            # Without an id only identical bytes are the same delivery.
            return f"sha256:{body_digest(body)}"
        return _token(sent.delivery_id, "delivery id", _MAX_DELIVERY_ID)


class ShopifyRules(PlatformRules):
    # 8 retries over 4 hours, and an hour more for clocks that disagree.
    max_age = timedelta(hours=5)
    UPSERT_TOPICS: ClassVar[frozenset[str]] = frozenset(
        {
            "orders/create",
            "orders/updated",
            "orders/paid",
            "orders/cancelled",
            "orders/fulfilled",
            "orders/partially_fulfilled",
            "orders/edited",
        }
    )

    def read_headers(self, headers: Mapping[str, str]) -> DeliveryHeaders:
        return DeliveryHeaders(
            signature=_header(headers, "x-shopify-hmac-sha256"),
            topic=_header(headers, "x-shopify-topic"),
            delivery_id=_header(headers, "x-shopify-webhook-id"),
            source=_header(headers, "x-shopify-shop-domain"),
            triggered_at=_timestamp(_header(headers, "x-shopify-triggered-at")),
        )

    def source_matches(self, source: str | None, domain: str) -> bool:
        return source is not None and source.lower() == domain

    def topic_action(self, topic: str, payload: Mapping[str, Any]) -> OrderAction:
        if topic == "orders/delete":
            return OrderAction.delete
        # orders/edited carries an order_edit summary, not the order; Shopify sends the
        # edited order itself as orders/updated.
        if topic not in self.UPSERT_TOPICS or "order_edit" in payload:
            return OrderAction.ignore
        return OrderAction.upsert

    def order_version(self, payload: Payload) -> OrderVersion:
        order = payload.data
        return OrderVersion(
            platform_order_id=_order_id(order),
            order_number=_text(order.get("name"), 100) or _text(order.get("order_number"), 100),
            total=_amount(order.get("total_price")),
            currency=_text(order.get("currency"), 10),
            financial_status=_text(order.get("financial_status"), 50),
            placed_at=_timestamp(order.get("created_at")),
            source_updated_at=_timestamp(order.get("updated_at")),
            raw=payload.json_text,
        )


class WooCommerceRules(PlatformRules):
    ACTIONS: ClassVar[Mapping[str, OrderAction]] = {
        "order.created": OrderAction.upsert,
        "order.updated": OrderAction.upsert,
        "order.restored": OrderAction.restore,
        "order.deleted": OrderAction.delete,
    }

    def read_headers(self, headers: Mapping[str, str]) -> DeliveryHeaders:
        topic = _header(headers, "x-wc-webhook-topic")
        resource = _header(headers, "x-wc-webhook-resource")
        event = _header(headers, "x-wc-webhook-event")
        if topic is None and resource is not None and event is not None:
            topic = f"{resource}.{event}"
        return DeliveryHeaders(
            signature=_header(headers, "x-wc-webhook-signature"),
            topic=topic,
            # Documented under both names.
            delivery_id=(
                _header(headers, "x-wc-webhook-delivery-id") or _header(headers, "x-wc-delivery-id")
            ),
            source=_header(headers, "x-wc-webhook-source"),
        )

    def is_ping(self, headers: Mapping[str, str], body: bytes) -> bool:
        # Sent when a webhook is saved as active: `webhook_id=N`, no X-WC headers at all.
        return not any(name.lower().startswith("x-wc-") for name in headers) and bool(
            _WOO_PING.fullmatch(body.strip())
        )

    def source_matches(self, source: str | None, domain: str) -> bool:
        if source is None:
            return False
        try:
            host = normalize_domain(source)
        except InvalidDomain:
            return False
        # A WordPress site URL may carry "www." where the integration does not, or the reverse.
        return host.removeprefix("www.") == domain.removeprefix("www.")

    def topic_action(self, topic: str, payload: Mapping[str, Any]) -> OrderAction:
        return self.ACTIONS.get(topic, OrderAction.ignore)

    def idempotency_key(self, sent: DeliveryHeaders, body: bytes) -> str:
        key = super().idempotency_key(sent, body)
        if sent.delivery_id is None:
            return key
        # WooCommerce derives the id from the webhook id and the current second
        # (WC_Webhook::get_new_delivery_id), so two different deliveries within one second
        # share it; a re-sent delivery also repeats the body.
        return f"{key}:{body_digest(body)[:16]}"

    def order_version(self, payload: Payload) -> OrderVersion:
        order = payload.data
        return OrderVersion(
            platform_order_id=_order_id(order),
            order_number=_text(order.get("number"), 100),
            total=_amount(order.get("total")),
            currency=_text(order.get("currency"), 10),
            financial_status=_text(order.get("status"), 50),
            placed_at=_timestamp(order.get("date_created_gmt") or order.get("date_created")),
            source_updated_at=_timestamp(
                order.get("date_modified_gmt") or order.get("date_modified")
            ),
            raw=payload.json_text,
        )


PLATFORMS: dict[str, PlatformRules] = {
    "shopify": ShopifyRules(),
    "woocommerce": WooCommerceRules(),
}
