"""Receive one order webhook: verify it, record the delivery once, store the order.

Nothing is written before the signature checks out. Then the transaction acts as the
integration's owner, so RLS guards the webhook path exactly as it guards the owner's own
requests; the only thing read before that is the target, through `app_webhook_target`.
The transaction commits before the 2xx goes out, and any failure rolls back the delivery
and the order together and answers 503, so the platform retries.

Deliveries arriving together are written in one transaction (`receive_batch`, fed by
`astra.webhooks.batch`): the targets in one statement, each delivery verified before
anything is written, then each written acting as its own owner, and one COMMIT for all.
When that transaction fails, each of its deliveries is received again on its own
(`receive_order_webhook`), so a failure answers 5xx for exactly the deliveries it touches.

An inactive (paused) integration still receives: its deliveries are verified and stored
with the outcome "held", so nothing a store sends while paused is lost and reactivating
needs no replay. Logs carry ids, topics, sizes and outcomes, never secrets or bodies.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Row, Select, bindparam, exists, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID, Insert, insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql.dml import ReturningInsert

from astra.crypto import decrypt
from astra.db.session import Database, Transaction, act_as, begin
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
# A batch's targets in one round trip. No acting user here: each delivery's writes act as
# its own owner (`_write_batch`).
TARGETS = text(
    """
    SELECT target.id, t.user_id, t.type AS platform, t.domain, t.is_active, t.webhook_secret,
           t.previous_webhook_secret, t.app_client_secret
    FROM unnest(:ids) AS target(id)
    CROSS JOIN LATERAL public.app_webhook_target(target.id) AS t
    """
).bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))))

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


class _Statements(NamedTuple):
    # The delivery alone; the delivery and its order version; the delivery and its delete.
    record: ReturningInsert[Any]
    store: Select[bool, bool]
    delete: Select[bool, bool]


def _statements(*, acting: bool) -> _Statements:
    """The delivery's statements. `acting`: each acts as the delivery's owner (`user_id`)
    itself, before any of its rows is written, so deliveries of different owners can follow
    one another in one transaction, one round trip each. RLS checks a row when it is
    written, against the user acted as then (the policies' `(SELECT app_user_id())` is
    evaluated at its first use, the first row's check), and the delivery's row is made from
    `acting`'s one row, so it cannot exist before. Were it ever checked earlier, it would be
    against the previous delivery's owner or none, and refused: the batch would fail and
    its deliveries be received one by one, never written as another seller."""
    record: Insert
    if acting:
        owner = bindparam("user_id", type_=webhook_deliveries.c.user_id.type)
        acted = select(func.public.app_act_as(owner).label("acted")).cte("acting")
        values = select(
            *(bindparam(name, type_=webhook_deliveries.c[name].type) for name in _DELIVERY_FIELDS)
        ).select_from(acted)
        record = insert(webhook_deliveries).from_select(_DELIVERY_FIELDS, values)
    else:
        record = insert(webhook_deliveries).values(
            {name: bindparam(name) for name in _DELIVERY_FIELDS}
        )
    recording = record.on_conflict_do_nothing(
        index_elements=["integration_id", "delivery_id"]
    ).returning(webhook_deliveries.c.delivery_id)
    recorded = recording.cte("recorded")
    just_recorded = exists(select(recorded.c.delivery_id))

    def with_order(write: ReturningInsert[Any]) -> Select[bool, bool]:
        """Record the delivery and write its order in one round trip. The order is written
        only when the delivery was recorded just now (a duplicate writes nothing): the write
        reads `recorded`, so the delivery's insert, and its wait on a concurrent copy, come
        first."""
        written = write.cte("written")
        return select(
            just_recorded.label("recorded"), exists(select(written.c.id)).label("written")
        )

    return _Statements(
        recording,
        with_order(writer.store_version(origin=OrderOrigin.webhook, when=just_recorded)),
        with_order(writer.mark_deleted(origin=OrderOrigin.webhook, when=just_recorded)),
    )


# In a transaction already acting as the owner (`TARGET` did), and in a batch.
AS_OWNER = _statements(acting=False)
ACTING = _statements(acting=True)
RECORD_DELIVERY = AS_OWNER.record
RECORD_AND_STORE_ORDER = AS_OWNER.store
RECORD_AND_DELETE_ORDER = AS_OWNER.delete
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
    """One delivery in `db`, a transaction of its own; the caller commits."""
    target = await _guarded(_find_target(db, integration_id), integration_id)
    checked = _check(target, integration_id, headers, body, encryption_key)
    if checked is None:
        return "ping"
    assert target is not None  # else _check raised NotFound
    receipt = await _guarded(_record(db, integration_id, target, checked), integration_id)
    _log_received(integration_id, target, checked, receipt)
    return receipt


def _check(
    target: Row[Any] | None,
    integration_id: uuid.UUID,
    headers: Mapping[str, str],
    body: bytes,
    encryption_key: bytes,
) -> Delivery | None:
    """The delivery to record, once verified (404, 401 or 400 when it cannot be); None for
    WooCommerce's ping, which records nothing."""
    if target is None:
        _refused(integration_id, "unknown-integration")
        raise NotFound(NO_INTEGRATION)
    rules = PLATFORMS[target.platform]
    if rules.is_ping(headers, body):
        log.info("webhook ping", extra={"integration_id": str(integration_id)})
        return None
    sent = rules.read_headers(headers)
    _check_sender(rules, sent, target, body, integration_id, encryption_key)
    return _prepare(rules, sent, body, integration_id)


def _log_received(
    integration_id: uuid.UUID, target: Row[Any], delivery: Delivery, receipt: Receipt
) -> None:
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


@dataclass(slots=True)
class Arrival:
    """A delivery waiting for its batch: what the request brought, the request's context
    (its logs keep the request's id), and where its answer goes."""

    integration_id: uuid.UUID
    headers: Mapping[str, str]
    body: bytes
    context: contextvars.Context
    answer: asyncio.Future[Receipt]

    def settle(self, receipt: Receipt | None = None, error: BaseException | None = None) -> None:
        # Done already: the request went away (cancelled) before its answer.
        if self.answer.done():
            return
        if error is not None:
            self.answer.set_exception(error)
        else:
            assert receipt is not None
            self.answer.set_result(receipt)


@dataclass(frozen=True, slots=True)
class _Verified:
    arrival: Arrival
    target: Row[Any]
    delivery: Delivery

    @property
    def lock_order(self) -> tuple[str, str, str, str]:
        """Concurrent batches take their row locks (the delivery's key, the order's row) in
        this one order, so two of them never wait for each other in a cycle (copies of one
        delivery included). Versions of one order are written in delivery-id order: the
        newest wins whatever the order, and two as new as each other arrived within the
        window, so neither came later."""
        order = self.delivery.order
        return (
            str(self.target.user_id),
            str(self.arrival.integration_id),
            order.platform_order_id if order else "",
            self.delivery.key,
        )


async def receive_batch(
    database: Database, arrivals: Sequence[Arrival], encryption_key: bytes
) -> bool:
    """Receive `arrivals` in one transaction and settle each of them: its receipt once the
    transaction has committed, or its refusal (404, 401, 400, before anything is written).
    When the transaction fails, each delivery not yet settled is received again in a
    transaction of its own, so only those that fail alone answer 5xx. Returns whether the
    batch committed."""
    verified: list[_Verified] = []
    try:
        async with begin(database) as db:
            ids = list(dict.fromkeys(arrival.integration_id for arrival in arrivals))
            targets = {row.id: row for row in await db.execute(TARGETS, {"ids": ids})}
            for arrival in arrivals:
                target = targets.get(arrival.integration_id)
                try:
                    delivery = arrival.context.run(
                        _check,
                        target,
                        arrival.integration_id,
                        arrival.headers,
                        arrival.body,
                        encryption_key,
                    )
                except AstraError as exc:
                    arrival.settle(error=exc)
                    continue
                if delivery is None:
                    arrival.settle("ping")
                    continue
                assert target is not None
                verified.append(_Verified(arrival, target, delivery))
            verified.sort(key=lambda item: item.lock_order)
            receipts = await _write_batch(db, verified)
    except Exception as exc:  # each delivery is received again, on its own
        log.warning(
            "webhook batch failed; its deliveries are received one by one",
            extra={
                "deliveries": len(arrivals),
                "error": type(exc).__name__,
                "sqlstate": _sqlstate(exc),
            },
        )
        await asyncio.gather(
            *(
                asyncio.create_task(
                    _receive_alone(database, arrival, encryption_key), context=arrival.context
                )
                for arrival in arrivals
                if not arrival.answer.done()
            )
        )
        return False
    for item, receipt in zip(verified, receipts, strict=True):
        item.arrival.context.run(
            _log_received, item.arrival.integration_id, item.target, item.delivery, receipt
        )
        item.arrival.settle(receipt)
    return True


async def _write_batch(db: Transaction, verified: list[_Verified]) -> list[Receipt]:
    """Each delivery's writes, each statement acting as its owner (`ACTING`): RLS checks
    every row against the owner of the delivery that writes it, as on the one-by-one path."""
    return [
        await _write(db, item.arrival.integration_id, item.target, item.delivery, ACTING)
        for item in verified
    ]


async def _receive_alone(database: Database, arrival: Arrival, encryption_key: bytes) -> None:
    try:
        receipt = await receive_alone(
            database,
            integration_id=arrival.integration_id,
            headers=arrival.headers,
            body=arrival.body,
            encryption_key=encryption_key,
        )
    except Exception as exc:  # the request's own answer: raised in its route
        arrival.settle(error=exc)
    else:
        arrival.settle(receipt)


async def receive_alone(
    database: Database,
    *,
    integration_id: uuid.UUID,
    headers: Mapping[str, str],
    body: bytes,
    encryption_key: bytes,
) -> Receipt:
    """One delivery in one transaction, committed before this returns; a failure to
    commit is a 503 too, so the platform retries."""

    async def committed() -> Receipt:
        async with begin(database) as db:
            return await receive_order_webhook(
                db,
                integration_id=integration_id,
                headers=headers,
                body=body,
                encryption_key=encryption_key,
            )

    return await _guarded(committed(), integration_id)


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
        log.error(
            "webhook failed",
            extra={
                "integration_id": str(integration_id),
                "error": type(exc).__name__,
                "sqlstate": _sqlstate(exc),
            },
        )
        raise DeliveryFailed("The delivery could not be stored; send it again later.") from None


def _sqlstate(exc: BaseException) -> str | None:
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return None if sqlstate is None else str(sqlstate)


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
    """Record the delivery (in a transaction acting as the owner). An order the database
    cannot hold (SQLSTATE class 22) is recorded refused, in the transaction begun again."""
    try:
        return await _write(db, integration_id, target, delivery)
    except DBAPIError as exc:
        if not str(getattr(exc.orig, "sqlstate", "")).startswith(_DATA_EXCEPTION):
            raise
        return await _record_unholdable(
            db, target, _delivery_values(integration_id, target, delivery)
        )


def _delivery_values(
    integration_id: uuid.UUID, target: Row[Any], delivery: Delivery
) -> dict[str, Any]:
    order = delivery.order
    return {
        "integration_id": integration_id,
        "delivery_id": delivery.key,
        "user_id": target.user_id,
        "topic": delivery.topic,
        "platform_order_id": order.platform_order_id if order else None,
        "outcome": _planned_outcome(delivery, target.is_active).value,
        "body_bytes": delivery.body_bytes,
        "reason": delivery.refusal,
    }


async def _write(
    db: Transaction,
    integration_id: uuid.UUID,
    target: Row[Any],
    delivery: Delivery,
    statements: _Statements = AS_OWNER,
) -> Receipt:
    """The delivery's statements; any database error is raised as it is."""
    outcome = _planned_outcome(delivery, target.is_active)
    order = delivery.order
    values = _delivery_values(integration_id, target, delivery)
    if order is None:
        if delivery.refusal is not None:
            _refused(integration_id, "not-acted-on")
        recorded = (await db.execute(statements.record, values)).first() is not None
        return outcome.value if recorded else "duplicate"
    values |= order.parameters() | {"platform": target.platform}
    if delivery.action is OrderAction.delete:
        statement = statements.delete
        values["deleted_at"] = delivery.moment
    else:
        statement = statements.store
        values["restore"] = delivery.action is OrderAction.restore
    recorded, written = (await db.execute(statement, values)).one()
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
