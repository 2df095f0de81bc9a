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
from typing import Any, TypeVar, cast

from sqlalchemy import Row, Select, Table, select, text
from sqlalchemy.exc import SQLAlchemyError

from astra.auth.principal import Principal
from astra.db.session import Transaction
from astra.errors import OUTAGE_RETRY_SECONDS, AstraError, NotAuthenticated, NotFound
from astra.integrations.service import ensure_visible
from astra.webhooks.models import DeliveryOutcome, WebhookDelivery
from astra.webhooks.platforms import (
    PLATFORMS,
    DeliveryHeaders,
    MalformedDelivery,
    OrderAction,
    OrderFields,
    Payload,
    PlatformRules,
    parse_payload,
)
from astra.webhooks.schemas import DeliveryRead, Receipt
from astra.webhooks.signatures import verify

log = logging.getLogger(__name__)

# The target, and (same round trip) the transaction acting as its owner. Acting before the
# signature is checked is harmless: a refused delivery raises, and the rollback takes the
# setting with it before anything is written.
TARGET = text(
    """
    SELECT t.user_id, t.type, t.domain, t.is_active, t.webhook_secret,
           t.previous_webhook_secret,
           set_config('request.jwt.claims',
                      json_build_object('sub', t.user_id, 'role', 'authenticated')::text, true)
    FROM public.app_webhook_target(:id) AS t
    """
)

# Static SQL, compiled once: the webhook path is the hottest in the service.
_RECORD_DELIVERY = """
    INSERT INTO public.webhook_deliveries
      (integration_id, delivery_id, user_id, topic, platform_order_id, outcome, body_bytes)
    VALUES (:integration_id, :delivery_id, :user_id, :topic, :platform_order_id, :outcome,
            :body_bytes)
    ON CONFLICT (integration_id, delivery_id) DO NOTHING
    RETURNING delivery_id
"""
RECORD_DELIVERY = text(_RECORD_DELIVERY)
MARK_DELIVERY_STALE = text(
    "UPDATE public.webhook_deliveries SET outcome = 'stale' "
    "WHERE integration_id = :integration_id AND delivery_id = :delivery_id"
)
# Record the delivery and write its order in one round trip. The order is written only
# when the delivery was recorded just now (a duplicate writes nothing): `written` reads
# `recorded`, so the delivery's insert, and its wait on a concurrent copy, come first.
# INSERT ... SELECT gives bound values no column to take a type from, hence the casts.
_RECORD_WITH_ORDER = """
    WITH recorded AS ({record}),
    written AS (
      INSERT INTO public.orders AS o
        (integration_id, user_id, platform, platform_order_id, order_number, total, currency,
         financial_status, placed_at, source_updated_at, raw, deleted_at)
      SELECT CAST(:integration_id AS uuid), CAST(:user_id AS uuid), CAST(:platform AS text),
             CAST(:platform_order_id AS text), CAST(:order_number AS text),
             CAST(:total AS numeric), CAST(:currency AS text),
             CAST(:financial_status AS text), CAST(:placed_at AS timestamptz),
             CAST(:source_updated_at AS timestamptz), CAST(:raw AS jsonb), {deleted_at}
      WHERE EXISTS (SELECT FROM recorded)
      ON CONFLICT (integration_id, platform_order_id) DO UPDATE SET {update}
      {version_check}
      RETURNING o.id
    )
    SELECT EXISTS (SELECT FROM recorded) AS recorded, EXISTS (SELECT FROM written) AS written
"""
RECORD_AND_UPSERT_ORDER = text(
    _RECORD_WITH_ORDER.format(
        record=_RECORD_DELIVERY,
        deleted_at="NULL",
        update="""
        order_number = EXCLUDED.order_number, total = EXCLUDED.total,
        currency = EXCLUDED.currency, financial_status = EXCLUDED.financial_status,
        placed_at = EXCLUDED.placed_at, source_updated_at = EXCLUDED.source_updated_at,
        raw = EXCLUDED.raw, updated_at = now(),
        -- Only a restore brings a deleted order back; a late update of it does not.
        deleted_at = CASE WHEN CAST(:restore AS boolean) THEN NULL ELSE o.deleted_at END""",
        # An older version never overwrites a newer one. Ties go to the later arrival:
        # Shopify sends orders/paid and orders/updated for one change with one updated_at.
        # (Under READ COMMITTED, ON CONFLICT compares with the newest committed version.)
        version_check="""
      WHERE o.source_updated_at IS NULL
         OR EXCLUDED.source_updated_at >= o.source_updated_at""",
    )
)
# The delete payload is only the id: keep the last full version, mark it deleted.
RECORD_AND_DELETE_ORDER = text(
    _RECORD_WITH_ORDER.format(
        record=_RECORD_DELIVERY,
        deleted_at="now()",
        update="deleted_at = coalesce(o.deleted_at, now()), updated_at = now()",
        version_check="",
    )
)
NO_INTEGRATION = "No integration with this id."

deliveries = cast(Table, WebhookDelivery.__table__)
# The delivery log as sellers read it: the columns DeliveryRead shows.
DELIVERY_COLUMNS = tuple(deliveries.c[name] for name in DeliveryRead.model_fields)

T = TypeVar("T")


class MalformedBody(AstraError):
    status_code = 400


class InvalidSignature(NotAuthenticated):
    """Missing or wrong signature, or a delivery naming another store."""


class BodyTooLarge(AstraError):
    status_code = 413


class DeliveryFailed(AstraError):
    """The delivery could not be stored; the platform should send it again, and is told
    when (Retry-After), as the outage handler tells everyone."""

    status_code = 503
    retry_after = OUTAGE_RETRY_SECONDS


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery, ready to record."""

    key: str
    topic: str
    action: OrderAction
    order: OrderFields | None
    payload: Payload
    body_bytes: int


async def receive_order_webhook(
    db: Transaction,
    *,
    integration_id: uuid.UUID,
    headers: Mapping[str, str],
    body: bytes,
) -> Receipt:
    target = await _guarded(_find_target(db, integration_id), integration_id)
    if target is None:
        _refused(integration_id, "unknown-integration")
        raise NotFound(NO_INTEGRATION)
    rules = PLATFORMS[target.type]
    if rules.is_ping(headers, body):
        log.info("webhook ping", extra={"integration_id": str(integration_id)})
        return "ping"
    sent = rules.read_headers(headers)
    _check_sender(rules, sent, target, body, integration_id)
    delivery = _prepare(rules, sent, body, integration_id)
    receipt = await _guarded(_record(db, integration_id, target, delivery), integration_id)
    log.info(
        "webhook received",
        extra={
            "integration_id": str(integration_id),
            "platform": target.type,
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
) -> None:
    """401 unless the body is signed with a valid secret and names the integration's store."""
    if sent.signature is None:
        _refused(integration_id, "unsigned")
        raise InvalidSignature("The delivery is not signed.")
    valid_secrets = [s for s in (target.webhook_secret, target.previous_webhook_secret) if s]
    if not verify(valid_secrets, body, sent.signature):
        _refused(integration_id, "bad-signature")
        raise InvalidSignature("The signature does not match this integration's webhook secret.")
    if not rules.source_matches(sent.source, target.domain):
        _refused(integration_id, "other-store")
        raise InvalidSignature("The delivery names another store than this integration's.")


def _prepare(
    rules: PlatformRules, sent: DeliveryHeaders, body: bytes, integration_id: uuid.UUID
) -> Delivery:
    """Parse a verified body into what gets recorded; 400 when it cannot be."""
    try:
        payload = parse_payload(body)
        topic = rules.topic(sent)
        action = rules.action(topic, payload.data)
        return Delivery(
            key=rules.idempotency_key(sent, body),
            topic=topic,
            action=action,
            order=None if action is OrderAction.ignore else rules.order_fields(payload.data),
            payload=payload,
            body_bytes=len(body),
        )
    except MalformedDelivery as exc:
        _refused(integration_id, "malformed")
        raise MalformedBody(str(exc)) from None


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


def _planned_outcome(action: OrderAction, is_active: bool) -> DeliveryOutcome:
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
    outcome = _planned_outcome(delivery.action, target.is_active)
    order = delivery.order
    values: dict[str, Any] = {
        "integration_id": integration_id,
        "delivery_id": delivery.key,
        "user_id": target.user_id,
        "topic": delivery.topic,
        "platform_order_id": order.platform_order_id if order else None,
        "outcome": outcome.value,
        "body_bytes": delivery.body_bytes,
    }
    if order is None:
        recorded = (await db.execute(RECORD_DELIVERY, values)).first() is not None
        return outcome.value if recorded else "duplicate"
    values |= {
        "platform": target.type,
        "order_number": order.order_number,
        "total": order.total,
        "currency": order.currency,
        "financial_status": order.financial_status,
        "placed_at": order.placed_at,
        "source_updated_at": order.source_updated_at,
        "raw": delivery.payload.json_text,
    }
    if delivery.action is OrderAction.delete:
        statement = RECORD_AND_DELETE_ORDER
    else:
        statement = RECORD_AND_UPSERT_ORDER
        values["restore"] = delivery.action is OrderAction.restore
    recorded, written = (await db.execute(statement, values)).one()
    if not recorded:
        return "duplicate"
    if not written and outcome is DeliveryOutcome.stored:
        # The stored version is newer (rare): the delivery says so.
        await db.execute(
            MARK_DELIVERY_STALE, {"integration_id": integration_id, "delivery_id": delivery.key}
        )
        return DeliveryOutcome.stale.value
    return outcome.value


async def list_deliveries(
    db: Transaction, principal: Principal, integration_id: uuid.UUID, *, limit: int
) -> list[Row[Any]]:
    """The newest deliveries of one integration the principal may see (403/404 otherwise)."""
    await ensure_visible(db, principal, integration_id)
    return list(await db.execute(deliveries_page(integration_id, limit=limit)))


def deliveries_page(integration_id: uuid.UUID, *, limit: int) -> Select[Any]:
    """The statement `list_deliveries` runs (and the query-plan test plans)."""
    return (
        select(*DELIVERY_COLUMNS)
        .where(deliveries.c.integration_id == integration_id)
        .order_by(deliveries.c.received_at.desc())
        .limit(limit)
    )
