"""Order reads. Every read goes through `visible_orders`: admins see all orders, sellers
their own; RLS enforces the same rule again inside PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Select, Table, select, tuple_

from astra.auth.principal import Principal
from astra.db.session import Transaction
from astra.integrations.service import ensure_visible
from astra.orders.models import Order
from astra.orders.schemas import OrderRead
from astra.pagination import decode_cursor, split_page

orders = cast(Table, Order.__table__)
# What a reader sees of an order (the OrderRead fields): not the raw payload, which can
# be large.
READ_COLUMNS = tuple(orders.c[name] for name in OrderRead.model_fields)


@dataclass(frozen=True, slots=True)
class OrderPage:
    orders: list[Row[Any]]
    next_cursor: str | None


def visible_orders(principal: Principal) -> Select[Any]:
    """The one place that decides which orders a principal may see: live ones only."""
    query = select(*READ_COLUMNS).where(orders.c.deleted_at.is_(None))
    if not principal.is_admin:
        query = query.where(orders.c.user_id == principal.id)
    return query


async def list_orders(
    db: Transaction,
    principal: Principal,
    *,
    integration_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> OrderPage:
    """Newest first by arrival; one integration's (403/404 as for the integration) or all."""
    if integration_id is not None:
        await ensure_visible(db, principal, integration_id)
    after = decode_cursor(cursor) if cursor is not None else None
    query = orders_page(principal, integration_id=integration_id, after=after, limit=limit + 1)
    rows = list(await db.execute(query))
    return OrderPage(*split_page(rows, limit, lambda row: (row.received_at, row.id)))


def orders_page(
    principal: Principal,
    *,
    integration_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Select[Any]:
    """The statement `list_orders` runs (and the query-plan test plans): the visible
    orders, of one integration or all, newest arrival first, after the cursor's row."""
    query = visible_orders(principal)
    if integration_id is not None:
        query = query.where(orders.c.integration_id == integration_id)
    if after is not None:
        query = query.where(tuple_(orders.c.received_at, orders.c.id) < after)
    return query.order_by(orders.c.received_at.desc(), orders.c.id.desc()).limit(limit)
