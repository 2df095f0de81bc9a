"""Order reads. Every read goes through `visible_orders`: admins see all orders, sellers
their own; RLS enforces the same rule again inside PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from astra.auth.principal import Principal
from astra.integrations.service import ensure_visible
from astra.orders.models import Order
from astra.pagination import decode_cursor, split_page


@dataclass(frozen=True, slots=True)
class OrderPage:
    orders: list[Order]
    next_cursor: str | None


def visible_orders(principal: Principal) -> Select[Order]:
    """The one place that decides which orders a principal may see: live ones only."""
    query = select(Order).where(Order.deleted_at.is_(None))
    if not principal.is_admin:
        query = query.where(Order.user_id == principal.id)
    return query


async def list_orders(
    session: AsyncSession,
    principal: Principal,
    *,
    integration_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> OrderPage:
    """Newest first by arrival; one integration's (403/404 as for the integration) or all."""
    query = visible_orders(principal)
    if integration_id is not None:
        await ensure_visible(session, principal, integration_id)
        query = query.where(Order.integration_id == integration_id)
    if cursor is not None:
        received_at, order_id = decode_cursor(cursor)
        query = query.where(tuple_(Order.received_at, Order.id) < (received_at, order_id))
    query = query.order_by(Order.received_at.desc(), Order.id.desc()).limit(limit + 1)
    orders = list(await session.scalars(query))
    return OrderPage(*split_page(orders, limit, lambda order: (order.received_at, order.id)))
