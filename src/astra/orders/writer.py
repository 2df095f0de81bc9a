"""The one place that stores an order version: webhooks and syncs both write through here.

One row per store order (`integration_id`, `platform_order_id`). Its rules:
- the newest version wins by the order's own `updated_at` (`source_updated_at`); ties go to
  the later arrival, since Shopify sends orders/paid and orders/updated for one change with
  one updated_at (a sync's listing, though, never replaces a version as new as its own).
  Under READ COMMITTED, ON CONFLICT compares with the newest committed row;
- a delete keeps the last full version and marks it deleted, and never wins over a version
  the store made after the delete (`deleted_at`, the platform's moment of deletion);
- only a restore brings a deleted order back, and only with a version the store made after
  the delete; a late update of it, or an old version under a restore topic, does not.

The statements are built once, as SQLAlchemy Core, from the values `OrderVersion` names as
bound parameters. `store_version` and `mark_deleted` take an optional condition so a caller
can make the write part of its own statement (the webhook receiver writes the order only
when the delivery was recorded just now, in the same round trip); `store_versions` writes a
page of a sync's orders in one statement, by the same rules. Each names the `origin` a new
order is stored with (an order keeps the origin it was first stored with).
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
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    false,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, Insert, insert
from sqlalchemy.sql.dml import ReturningInsert

from astra.db.tables import OrderOrigin, orders


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


def batch_parameters(versions: list[OrderVersion]) -> dict[str, list[Any]]:
    """`store_versions`' per-order parameters: one list per OrderVersion field."""
    return {name: [getattr(version, name) for version in versions] for name in _FIELDS}


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


# A page of versions as rows: one array parameter per OrderVersion field, side by side.
_BATCH_TYPES = {name: Text() if name == "raw" else orders.c[name].type for name in _FIELDS}
_INCOMING = (
    func.unnest(*(bindparam(name, type_=ARRAY(kind)) for name, kind in _BATCH_TYPES.items()))
    .table_valued(*(column(name, kind) for name, kind in _BATCH_TYPES.items()))
    .render_derived(name="incoming")
)
_BATCH_VALUES = (
    *(bindparam(name, type_=orders.c[name].type) for name in _PLAIN[:3]),
    *(_INCOMING.c[name] for name in _PLAIN[3:]),
    cast(_INCOMING.c.raw, JSONB),
)


def _constant(origin: OrderOrigin) -> ColumnElement[str]:
    # In the SQL text, not a parameter: each statement is built for one origin, and its
    # parameters stay the ones the docstrings name. (An enum value: nothing to escape.)
    return literal_column(f"'{origin.value}'", Text)


def _version(*, deleted: bool, when: ColumnElement[bool] | None, origin: OrderOrigin) -> Insert:
    columns = (*_PLAIN, "raw", "origin", "deleted_at") if deleted else (*_PLAIN, "raw", "origin")
    values: Select[Any] = select(*_VALUES, _constant(origin))
    if deleted:
        values = values.add_columns(_DELETED_AT)
    if when is not None:
        values = values.where(when)
    return insert(orders).from_select(columns, values)


def store_version(
    *, origin: OrderOrigin, when: ColumnElement[bool] | None = None
) -> ReturningInsert[Any]:
    """Create the order or bring it up to date, unless the stored version is newer.

    Parameters: `integration_id`, `user_id`, `platform`, `OrderVersion.parameters()` and
    `restore` (whether this version undeletes the order). Returns the order's id when it
    was written, no row when the stored version is newer."""
    statement = _newest_wins(
        _version(deleted=False, when=when, origin=origin), bindparam("restore", type_=Boolean())
    )
    return statement.returning(orders.c.id)


def store_versions(*, origin: OrderOrigin) -> ReturningInsert[Any]:
    """`store_version` for a page of a sync's orders, of one integration, each order at
    most once: parameters `integration_id`, `user_id`, `platform` and
    `batch_parameters(versions)`. None undeletes an order, and a version only as new as the
    stored one leaves it as it is: the store's webhook sent the whole order, and a listing
    may show less of it. Returns the `platform_order_id` and `source_updated_at` of each
    order written: new, or newer than the version stored."""
    values = select(*_BATCH_VALUES, _constant(origin)).select_from(_INCOMING)
    statement = insert(orders).from_select((*_PLAIN, "raw", "origin"), values)
    return _newest_wins(statement, false(), replace_equal=False).returning(
        orders.c.platform_order_id, orders.c.source_updated_at
    )


def _newest_wins(
    statement: Insert, restore: ColumnElement[bool], *, replace_equal: bool = True
) -> Insert:
    """On conflict, the version replaces the stored one unless that one is newer (or as
    new, without `replace_equal`); a delete stays unless `restore` and the version is newer
    than the delete."""
    new = statement.excluded
    newer = (
        new.source_updated_at >= orders.c.source_updated_at
        if replace_equal
        else new.source_updated_at > orders.c.source_updated_at
    )
    return statement.on_conflict_do_update(
        constraint="orders_integration_order_key",
        set_={
            **{name: new[name] for name in _PLAIN[4:]},
            "raw": new.raw,
            "updated_at": func.now(),
            "deleted_at": case(
                (and_(restore, new.source_updated_at > orders.c.deleted_at), None),
                else_=orders.c.deleted_at,
            ),
        },
        where=or_(orders.c.source_updated_at.is_(None), newer),
    )


def mark_deleted(
    *, origin: OrderOrigin, when: ColumnElement[bool] | None = None
) -> ReturningInsert[Any]:
    """Mark the order deleted as of `deleted_at`, keeping its last full version (an order
    never seen before is kept with what the delete said of it). Nothing changes when the
    stored version is newer than the delete. Returns the order's id when it was written."""
    statement = _version(deleted=True, when=when, origin=origin)
    return statement.on_conflict_do_update(
        constraint="orders_integration_order_key",
        set_={
            "deleted_at": func.coalesce(orders.c.deleted_at, _DELETED_AT),
            "updated_at": func.now(),
        },
        where=or_(orders.c.source_updated_at.is_(None), orders.c.source_updated_at <= _DELETED_AT),
    ).returning(orders.c.id)
