"""Receive one order webhook: verify it, record the delivery once, store the order.

Nothing is written before the signature checks out. Then the transaction acts as the
integration's owner, so RLS guards the webhook path exactly as it guards the owner's own
requests; the only thing read before that is the target, through `app_webhook_target`.
The route's transaction commits before the 2xx goes out, and any failure rolls back the
delivery and the order together and answers 503, so the platform retries.

An inactive (paused) integration still receives: its deliveries are verified and stored
with the outcome "held", so nothing a store sends while paused is lost and reactivating
needs no replay. Logs carry ids, topics, sizes and outcomes, never secrets or bodies.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Row, Select, bindparam, exists, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql.dml import ReturningInsert

from astra.crypto import decrypt
from astra.db.session import Transaction, act_as
from astra.db.tables import DeliveryOutcome, OrderOrigin, webhook_deliveries
from astra.errors import OUTAGE_RETRY_SECONDS, AstraError, NotAuthenticated, NotFound
from astra.orders import writer
from astra.orders.writer import OrderVersion
from astra.webhooks.platforms import (
    PLATFORMS,
    DeliveryHeaders,
    MalformedDelivery,
    OrderAction,
    PlatformRules,
    RefusedDelivery,
    parse_payload,
)
from astra.webhooks.schemas import Receipt
from astra.webhooks.signatures import verify

log = logging.getLogger(__name__)

NO_INTEGRATION = "No integration with this id."

# The target, and (same round trip) the transaction acting as its owner. Acting before the
# signature is checked is harmless: a refused delivery raises, and the rollback takes the
# setting with it before anything is written.
TARGET = text(
    """
    SELECT t.user_id, t.type AS platform, t.domain, t.is_active, t.webhook_secret,
           t.previous_webhook_secret, t.app_client_secret, public.app_act_as(t.user_id)
    FROM public.app_webhook_target(:id) AS t
    """
)

# Record the delivery once: a copy already recorded returns no row. The statements below
# are built once; the webhook path is the hottest in the service.
_DELIVERY_FIELDS = (
    "integration_id",
    "delivery_id",
    "user_id",
    "topic",
    "platform_order_id",
    "outcome",
    "body_bytes",
    "reason",
)
RECORD_DELIVERY = (
    insert(webhook_deliveries)
    .values({name: bindparam(name) for name in _DELIVERY_FIELDS})
    .on_conflict_do_nothing(index_elements=["integration_id", "delivery_id"])
    .returning(webhook_deliveries.c.delivery_id)
)
_recorded = RECORD_DELIVERY.cte("recorded")
_just_recorded = exists(select(_recorded.c.delivery_id))


def _with_order(write: ReturningInsert[Any]) -> Select[bool, bool]:
    """Record the delivery and write its order in one round trip. The order is written only
    when the delivery was recorded just now (a duplicate writes nothing): the write reads
    `recorded`, so the delivery's insert, and its wait on a concurrent copy, come first."""
    written = write.cte("written")
    return select(_just_recorded.label("recorded"), exists(select(written.c.id)).label("written"))


RECORD_AND_STORE_ORDER = _with_order(
    writer.store_version(origin=OrderOrigin.webhook, when=_just_recorded)
)
RECORD_AND_DELETE_ORDER = _with_order(
    writer.mark_deleted(origin=OrderOrigin.webhook, when=_just_recorded)
)
# The stored version is newer than the delivery's: the log says so.
MARK_DELIVERY_STALE = text(
    "UPDATE public.webhook_deliveries SET outcome = 'stale' "
    "WHERE integration_id = :integration_id AND delivery_id = :delivery_id"
)

T = TypeVar("T")


class MalformedBody(AstraError):
    status_code = 400


class InvalidSignature(NotAuthenticated):
    """Missing or wrong signature, or a delivery naming another store."""


class DeliveryFailed(AstraError):
    """The delivery could not be stored; the platform should send it again, and is told
    when (Retry-After), as the outage handler tells everyone."""

    status_code = 503
    retry_after = OUTAGE_RETRY_SECONDS


# SQLSTATE class 22, data exception: values the database cannot hold (a number or a time
# out of range, text it cannot encode). Sending the delivery again would fail the same way.
_DATA_EXCEPTION = "22"
UNHOLDABLE = "The order holds values the database cannot store (a number or a date out of range)."
TOO_OLD = "The platform sent this longer ago than it ever retries: a replay, not a delivery."


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery, ready to record."""

    key: str
    topic: str
    action: OrderAction
    order: OrderVersion | None
    body_bytes: int
    # When the order was deleted, for a delete: the platform's word, never later than now.
    moment: datetime
    # Set when the delivery is refused: the sentence the delivery log shows.
    refusal: str | None = None


async def receive_order_webhook(
    db: Transaction,
    *,
    integration_id: uuid.UUID,
    headers: Mapping[str, str],
    body: bytes,
    encryption_key: bytes,
) -> Receipt:
    target = await _guarded(_find_target(db, integration_id), integration_id)
    if target is None:
        _refused(integration_id, "unknown-integration")
        raise NotFound(NO_INTEGRATION)
    rules = PLATFORMS[target.platform]
    if rules.is_ping(headers, body):
        log.info("webhook ping", extra={"integration_id": str(integration_id)})
        return "ping"
    sent = rules.read_headers(headers)
    _check_sender(rules, sent, target, body, integration_id, encryption_key)
    delivery = _prepare(rules, sent, body, integration_id)
    receipt = await _guarded(_record(db, integration_id, target, delivery), integration_id)
    log.info(
        "webhook received",
        extra={
            "integration_id": str(integration_id),
            "platform": target.platform,
            "topic": delivery.topic,
            "delivery_id": delivery.key,
            "order_id": delivery.order.platform_order_id if delivery.order else None,
            "bytes": delivery.body_bytes,
            "outcome": receipt,
        },
    )
    return receipt


def _check_sender(
    rules: PlatformRules,
    sent: DeliveryHeaders,
    target: Row[Any],
    body: bytes,
    integration_id: uuid.UUID,
    encryption_key: bytes,
) -> None:
    """401 unless the body is signed with a valid secret and names the integration's store.

    Valid: the webhook secret, the previous one during its grace period, and the Shopify
    app's client secret, which signs the webhooks Astra registered through the API. All are
    stored encrypted; they are decrypted only once the delivery claims a signature."""
    if sent.signature is None:
        _refused(integration_id, "unsigned")
        raise InvalidSignature("The delivery is not signed.")
    stored = (target.webhook_secret, target.previous_webhook_secret, target.app_client_secret)
    valid_secrets = [decrypt(encryption_key, s) for s in stored if s]
    if not verify(valid_secrets, body, sent.signature):
        _refused(integration_id, "bad-signature")
        raise InvalidSignature("The signature does not match this integration's webhook secret.")
    if not rules.source_matches(sent.source, target.domain):
        _refused(integration_id, "other-store")
        raise InvalidSignature("The delivery names another store than this integration's.")


def _prepare(
    rules: PlatformRules, sent: DeliveryHeaders, body: bytes, integration_id: uuid.UUID
) -> Delivery:
    """Parse a verified body into what gets recorded; 400 when it cannot be. A delivery not
    to be acted on comes back with its `refusal`, to be recorded as such."""
    now = datetime.now(UTC)
    moment = min(sent.triggered_at, now) if sent.triggered_at else now
    try:
        key = rules.idempotency_key(sent, body)
        topic = rules.topic(sent)
        payload = parse_payload(body)
        refusal = _refusal(rules, sent, now)
        try:
            action = rules.action(topic, payload.data)
        except RefusedDelivery as exc:
            refusal = refusal or str(exc)
        if refusal is not None:
            action = OrderAction.ignore
        order = None if action is OrderAction.ignore else rules.order_version(payload)
    except MalformedDelivery as exc:
        _refused(integration_id, "malformed")
        raise MalformedBody(str(exc)) from None
    return Delivery(key, topic, action, order, len(body), moment, refusal)


def _refusal(rules: PlatformRules, sent: DeliveryHeaders, now: datetime) -> str | None:
    if rules.max_age and sent.triggered_at and now - sent.triggered_at > rules.max_age:
        return TOO_OLD
    return None


async def _guarded(work: Awaitable[T], integration_id: uuid.UUID) -> T:
    """Run database work; a failure becomes a 503 whose text carries nothing of the body."""
    try:
        return await work
    except (SQLAlchemyError, OSError) as exc:
        # The exception text may quote the payload: log only its kind and SQLSTATE.
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
        log.error(
            "webhook failed",
            extra={
                "integration_id": str(integration_id),
                "error": type(exc).__name__,
                "sqlstate": sqlstate,
            },
        )
        raise DeliveryFailed("The delivery could not be stored; send it again later.") from None


def _refused(integration_id: uuid.UUID, reason: str) -> None:
    log.info("webhook refused", extra={"integration_id": str(integration_id), "reason": reason})


async def _find_target(db: Transaction, integration_id: uuid.UUID) -> Row[Any] | None:
    return (await db.execute(TARGET, {"id": integration_id})).one_or_none()


def _planned_outcome(delivery: Delivery, is_active: bool) -> DeliveryOutcome:
    action = delivery.action
    if delivery.refusal is not None:
        return DeliveryOutcome.refused
    if action is OrderAction.ignore:
        return DeliveryOutcome.ignored
    if not is_active:
        return DeliveryOutcome.held
    if action is OrderAction.delete:
        return DeliveryOutcome.deleted
    return DeliveryOutcome.stored


async def _record(
    db: Transaction, integration_id: uuid.UUID, target: Row[Any], delivery: Delivery
) -> Receipt:
    outcome = _planned_outcome(delivery, target.is_active)
    order = delivery.order
    values: dict[str, Any] = {
        "integration_id": integration_id,
        "delivery_id": delivery.key,
        "user_id": target.user_id,
        "topic": delivery.topic,
        "platform_order_id": order.platform_order_id if order else None,
        "outcome": outcome.value,
        "body_bytes": delivery.body_bytes,
        "reason": delivery.refusal,
    }
    if order is None:
        if delivery.refusal is not None:
            _refused(integration_id, "not-acted-on")
        recorded = (await db.execute(RECORD_DELIVERY, values)).first() is not None
        return outcome.value if recorded else "duplicate"
    values |= order.parameters() | {"platform": target.platform}
    if delivery.action is OrderAction.delete:
        statement = RECORD_AND_DELETE_ORDER
        values["deleted_at"] = delivery.moment
    else:
        statement = RECORD_AND_STORE_ORDER
        values["restore"] = delivery.action is OrderAction.restore
    try:
        recorded, written = (await db.execute(statement, values)).one()
    except DBAPIError as exc:
        if not str(getattr(exc.orig, "sqlstate", "")).startswith(_DATA_EXCEPTION):
            raise
        return await _record_unholdable(db, target, values)
    if not recorded:
        return "duplicate"
    if not written and outcome in (DeliveryOutcome.stored, DeliveryOutcome.deleted):
        # The stored version is newer (rare): the delivery says so.
        await db.execute(
            MARK_DELIVERY_STALE, {"integration_id": integration_id, "delivery_id": delivery.key}
        )
        return DeliveryOutcome.stale.value
    return outcome.value


async def _record_unholdable(db: Transaction, target: Row[Any], values: dict[str, Any]) -> Receipt:
    """The order could not be stored as sent: start again, as the owner, and record only the
    refused delivery (retrying would fail the same way, until the platform gives up)."""
    _refused(values["integration_id"], "unholdable")
    await db.end(commit=False)
    await act_as(db, target.user_id)
    refused = {name: values[name] for name in _DELIVERY_FIELDS} | {
        "outcome": DeliveryOutcome.refused.value,
        "reason": UNHOLDABLE,
    }
    recorded = (await db.execute(RECORD_DELIVERY, refused)).first() is not None
    return DeliveryOutcome.refused.value if recorded else "duplicate"
