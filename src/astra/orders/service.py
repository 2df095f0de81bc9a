"""Order reads, scoped by `astra.access`: admins see all orders, sellers their own; RLS
enforces the same rule again inside PostgreSQL. Deleted orders are left out."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, bindparam, select, tuple_

from astra.access import ensure_visible, viewer, visible_to
from astra.auth.principal import Principal
from astra.db.session import Row, Transaction
from astra.db.tables import orders
from astra.orders.schemas import OrderRead
from astra.pagination import Page, decode_cursor, split_page

# What a reader sees of an order (the OrderRead fields): not the raw payload, which can
# be large.
READ_COLUMNS = tuple(orders.c[name] for name in OrderRead.model_fields)


def visible_orders(
    *, is_admin: bool, one_integration: bool = False, after_cursor: bool = False
) -> Select[Any]:
    """Live orders a caller may see, newest first by arrival, `limit` of them; optionally
    one integration's (`integration_id`) and after a cursor (`after_at`, `after_id`)."""
    query = select(*READ_COLUMNS).where(
        orders.c.deleted_at.is_(None), *visible_to(orders, is_admin=is_admin)
    )
    if one_integration:
        query = query.where(orders.c.integration_id == bindparam("integration_id"))
    if after_cursor:
        position = tuple_(orders.c.received_at, orders.c.id)
        query = query.where(position < tuple_(bindparam("after_at"), bindparam("after_id")))
    return query.order_by(orders.c.received_at.desc(), orders.c.id.desc()).limit(bindparam("limit"))


# Built once, each shape of the list (see integrations' LIST_PAGE).
LIST_PAGE = {
    (is_admin, one, after): visible_orders(
        is_admin=is_admin, one_integration=one, after_cursor=after
    )
    for is_admin in (False, True)
    for one in (False, True)
    for after in (False, True)
}


async def list_orders(
    db: Transaction,
    principal: Principal,
    *,
    integration_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> Page[Row]:
    """Newest first by arrival; one integration's (403/404 as for the integration) or all."""
    params = viewer(principal) | {"limit": limit + 1}
    if integration_id is not None:
        await ensure_visible(db, principal, integration_id)
        params["integration_id"] = integration_id
    if cursor is not None:
        params["after_at"], params["after_id"] = decode_cursor(cursor)
    statement = LIST_PAGE[principal.is_admin, integration_id is not None, cursor is not None]
    rows = list(await db.execute(statement, params))
    return split_page(rows, limit, lambda row: (row.received_at, row.id))
