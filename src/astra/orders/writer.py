"""The one place that stores an order version: webhooks and syncs both write through here.

One row per store order (`integration_id`, `platform_order_id`). Its rules:
- the newest version wins by the order's own `updated_at` (`source_updated_at`); ties go to
  the later arrival, since Shopify sends orders/paid and orders/updated for one change with
  one updated_at. Under READ COMMITTED, ON CONFLICT compares with the newest committed row;
- a delete keeps the last full version and marks it deleted, and never wins over a version
  the store made after the delete (`deleted_at`, the platform's moment of deletion);
- only a restore brings a deleted order back, and only with a version the store made after
  the delete; a late update of it, or an old version under a restore topic, does not.

The statements are built once, as SQLAlchemy Core, from the values `OrderVersion` names as
bound parameters. `store_version` and `mark_deleted` take an optional condition so a caller
can make the write part of its own statement (the webhook receiver writes the order only
when the delivery was recorded just now, in the same round trip).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, Insert, insert
from sqlalchemy.sql.dml import ReturningInsert

from astra.db.tables import orders


@dataclass(frozen=True, slots=True)
class OrderVersion:
    """One version of one order, as a platform described it."""

    platform_order_id: str
    order_number: str | None
    total: Decimal | None
    currency: str | None
    financial_status: str | None
    placed_at: datetime | None
    source_updated_at: datetime | None
    # The payload as JSON text, stored as sent (jsonb), never parsed twice.
    raw: str

    def parameters(self) -> dict[str, Any]:
        """The bound values the statements below read (not dataclasses.asdict, which
        deep-copies every field: this runs once per delivery)."""
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(field.name for field in fields(OrderVersion))
_PLAIN = (
    "integration_id",
    "user_id",
    "platform",
    "platform_order_id",
    "order_number",
    "total",
    "currency",
    "financial_status",
    "placed_at",
    "source_updated_at",
)
_DELETED_AT = bindparam("deleted_at", type_=DateTime(timezone=True))
_VALUES = (
    *(bindparam(name, type_=orders.c[name].type) for name in _PLAIN),
    # JSON text as sent: cast in the database, not decoded and encoded again here.
    cast(bindparam("raw", type_=Text), JSONB),
)


def _version(*, deleted: bool, when: ColumnElement[bool] | None) -> Insert:
    columns = (*_PLAIN, "raw", "deleted_at") if deleted else (*_PLAIN, "raw")
    values = select(*_VALUES, _DELETED_AT) if deleted else select(*_VALUES)
    if when is not None:
        values = values.where(when)
    return insert(orders).from_select(columns, values)


def store_version(*, when: ColumnElement[bool] | None = None) -> ReturningInsert[Any]:
    """Create the order or bring it up to date, unless the stored version is newer.

    Parameters: `integration_id`, `user_id`, `platform`, `OrderVersion.parameters()` and
    `restore` (whether this version undeletes the order). Returns the order's id when it
    was written, no row when the stored version is newer."""
    statement = _version(deleted=False, when=when)
    new = statement.excluded
    return statement.on_conflict_do_update(
        constraint="orders_integration_order_key",
        set_={
            **{name: new[name] for name in _PLAIN[4:]},
            "raw": new.raw,
            "updated_at": func.now(),
            "deleted_at": case(
                (
                    and_(
                        bindparam("restore", type_=Boolean()),
                        new.source_updated_at > orders.c.deleted_at,
                    ),
                    None,
                ),
                else_=orders.c.deleted_at,
            ),
        },
        where=or_(
            orders.c.source_updated_at.is_(None),
            new.source_updated_at >= orders.c.source_updated_at,
        ),
    ).returning(orders.c.id)


def mark_deleted(*, when: ColumnElement[bool] | None = None) -> ReturningInsert[Any]:
    """Mark the order deleted as of `deleted_at`, keeping its last full version (an order
    never seen before is kept with what the delete said of it). Nothing changes when the
    stored version is newer than the delete. Returns the order's id when it was written."""
    statement = _version(deleted=True, when=when)
    return statement.on_conflict_do_update(
        constraint="orders_integration_order_key",
        set_={
            "deleted_at": func.coalesce(orders.c.deleted_at, _DELETED_AT),
            "updated_at": func.now(),
        },
        where=or_(orders.c.source_updated_at.is_(None), orders.c.source_updated_at <= _DELETED_AT),
    ).returning(orders.c.id)
