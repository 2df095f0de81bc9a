"""The per-platform rules on their own: headers, topics, keys, fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from starlette.datastructures import Headers

from astra.orders.writer import OrderVersion
from astra.webhooks.platforms import (
    MalformedDelivery,
    OrderAction,
    PlatformRules,
    RefusedDelivery,
    ShopifyRules,
    WooCommerceRules,
    parse_payload,
)

shopify = ShopifyRules()
woo = WooCommerceRules()


def test_headers_are_found_in_any_case() -> None:
    headers = Headers(
        raw=[
            (b"x-shopify-hmac-sha256", b"sig"),
            (b"x-shopify-topic", b"orders/paid"),
            (b"x-shopify-webhook-id", b"b54557e4"),
            (b"x-shopify-shop-domain", b"Linen-And-Co.myshopify.com"),
        ]
    )
    sent = shopify.read_headers(headers)
    assert (sent.signature, sent.topic, sent.delivery_id) == ("sig", "orders/paid", "b54557e4")
    assert shopify.source_matches(sent.source, "linen-and-co.myshopify.com")


def test_shopify_shop_must_be_exactly_the_integrations() -> None:
    assert not shopify.source_matches(None, "a.myshopify.com")
    assert not shopify.source_matches("b.myshopify.com", "a.myshopify.com")
    assert not shopify.source_matches("a.myshopify.com.evil.com", "a.myshopify.com")


@pytest.mark.parametrize(
    ("source", "matches"),
    [
        ("https://cups.example.com/", True),
        ("https://cups.example.com/wordpress/", True),
        ("https://www.cups.example.com", True),
        ("cups.example.com", True),
        ("https://cups.example.com.evil.net/", False),
        ("https://evil.net/?cups.example.com", False),
        ("https://cups.example.com@evil.net/", False),
        ("", False),
        (None, False),
    ],
)
def test_woocommerce_source_host_must_match(source: str | None, matches: bool) -> None:
    assert woo.source_matches(source, "cups.example.com") is matches


def test_woocommerce_ping_is_only_the_unsigned_form_body() -> None:
    assert woo.is_ping({"content-type": "application/x-www-form-urlencoded"}, b"webhook_id=14")
    assert not woo.is_ping({"x-wc-webhook-topic": "order.created"}, b"webhook_id=14")
    assert not woo.is_ping({}, b"webhook_id=14&x=1")
    assert not woo.is_ping({}, b'{"id": 1}')
    assert not shopify.is_ping({}, b"webhook_id=14")


def test_topics_decide_the_action() -> None:
    order, deleted = {"id": 1, "name": "#1001"}, {"id": 1}
    assert shopify.action("orders/create", order) is OrderAction.upsert
    assert shopify.action("orders/cancelled", order) is OrderAction.upsert
    assert shopify.action("orders/delete", deleted) is OrderAction.delete
    assert shopify.action("orders/edited", {"order_edit": {"order_id": 1}}) is OrderAction.ignore
    assert shopify.action("products/update", order) is OrderAction.ignore
    assert woo.action("order.updated", order) is OrderAction.upsert
    assert woo.action("order.restored", order) is OrderAction.restore
    assert woo.action("order.deleted", deleted) is OrderAction.delete
    assert woo.action("coupon.created", order) is OrderAction.ignore


@pytest.mark.parametrize(
    ("rules", "topic", "payload"),
    [
        # Only the body is signed: a whole order under a delete topic is a replay, not a delete.
        (shopify, "orders/delete", {"id": 1, "name": "#1001"}),
        (woo, "order.deleted", {"id": 1, "status": "processing"}),
        # ...and a delete's body under an order topic is no version of the order.
        (shopify, "orders/updated", {"id": 1}),
        (woo, "order.restored", {"id": 1}),
    ],
)
def test_a_body_of_another_topics_shape_is_refused(
    rules: PlatformRules, topic: str, payload: dict[str, object]
) -> None:
    with pytest.raises(RefusedDelivery):
        rules.action(topic, payload)


def test_idempotency_keys() -> None:
    sent = shopify.read_headers({"x-shopify-webhook-id": "b54557e4"})
    assert shopify.idempotency_key(sent, b"a") == shopify.idempotency_key(sent, b"b") == "b54557e4"
    woo_sent = woo.read_headers({"x-wc-webhook-delivery-id": "d1"})
    assert woo.idempotency_key(woo_sent, b"a") != woo.idempotency_key(woo_sent, b"b")
    assert woo.idempotency_key(woo_sent, b"a") == woo.idempotency_key(woo_sent, b"a")
    unnamed = shopify.read_headers({})
    assert shopify.idempotency_key(unnamed, b"a").startswith("sha256:")
    with pytest.raises(MalformedDelivery):
        shopify.idempotency_key(shopify.read_headers({"x-shopify-webhook-id": "x" * 201}), b"a")


def _version(rules: PlatformRules, order: dict[str, object]) -> OrderVersion:
    return rules.order_version(parse_payload(json.dumps(order).encode()))


def test_shopify_fields() -> None:
    fields = _version(
        shopify,
        {
            "id": 5523094421734,
            "name": "#1001",
            "total_price": "199.00",
            "currency": "USD",
            "financial_status": "partially_refunded",
            "created_at": "2024-05-02T10:12:31-04:00",
            "updated_at": "2024-05-02T10:15:31-04:00",
        },
    )
    assert fields.platform_order_id == "5523094421734"
    assert fields.order_number == "#1001"
    assert fields.total == Decimal("199.00")
    assert fields.placed_at == datetime(
        2024, 5, 2, 10, 12, 31, tzinfo=timezone(timedelta(hours=-4))
    )
    assert fields.source_updated_at == datetime(2024, 5, 2, 14, 15, 31, tzinfo=UTC)


def test_woocommerce_gmt_times_are_utc() -> None:
    fields = _version(
        woo,
        {
            "id": 727,
            "date_created_gmt": "2024-05-02T14:12:31",
            "date_modified_gmt": "2024-05-02T14:15:31",
        },
    )
    assert fields.placed_at == datetime(2024, 5, 2, 14, 12, 31, tzinfo=UTC)
    assert fields.source_updated_at == datetime(2024, 5, 2, 14, 15, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        ("29.35", Decimal("29.35")),
        (29, Decimal(29)),
        ("NaN", None),
        ("Infinity", None),
        ("1e400", None),
        ("abc", None),
        (True, None),
        ([], None),
        ("0.0000000001", Decimal("0.000000")),
    ],
)
def test_unusable_optional_fields_become_null_not_errors(
    total: object, expected: Decimal | None
) -> None:
    fields = _version(
        woo,
        {
            "id": 1,
            "total": total,
            "currency": "E" * 11,
            "status": None,
            "date_modified_gmt": "yesterday",
        },
    )
    assert fields.total == expected
    assert fields.currency is None
    assert fields.financial_status is None
    assert fields.source_updated_at is None


@pytest.mark.parametrize("order_id", [None, "", -1, 1.5, True, "x" * 65, "has space", {"a": 1}])
def test_an_order_needs_a_usable_id(order_id: object) -> None:
    with pytest.raises(MalformedDelivery):
        _version(shopify, {"id": order_id})


def test_parse_payload_keeps_the_exact_body_for_jsonb() -> None:
    body = b'{"id": 1, "big": 123456789012345678901234567890}'
    payload = parse_payload(body)
    assert payload.json_text == body.decode()
    assert payload.data["id"] == 1


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"text"', b"\xff\xfe", b'{"a": NaN}'])
def test_parse_payload_refuses_what_is_not_a_json_object(body: bytes) -> None:
    with pytest.raises(MalformedDelivery):
        parse_payload(body)
