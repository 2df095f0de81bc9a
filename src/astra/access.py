"""Who may see what: the one place that decides it, for every room that reads sellers' rows.

Every table of seller data carries its owner in `user_id` (orders and deliveries copy their
integration's, and a foreign key keeps the copy true), so one rule covers them all: one
branch per kind of caller. RLS enforces the same rule again inside PostgreSQL.

The seller is a bound parameter (`viewer_id`), not a literal, so each statement built from
this rule is built once and compiled once; `viewer(principal)` supplies the value.
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from sqlalchemy import ColumnElement, Table, bindparam, select, text

from astra.auth.principal import Principal
from astra.db.session import Transaction
from astra.db.tables import integrations
from astra.errors import Forbidden, NotFound

NO_INTEGRATION = "No integration with this id."
_EXISTS = text("SELECT public.app_integration_exists(:id)")


def visible_to(table: Table, *, is_admin: bool) -> list[ColumnElement[bool]]:
    """The conditions under which a caller sees `table`'s rows: an admin every row, a seller
    the rows they own (`viewer_id`)."""
    if is_admin:
        return []
    return [table.c.user_id == bindparam("viewer_id")]


def viewer(principal: Principal) -> dict[str, Any]:
    """The parameters that `visible_to`'s conditions read."""
    return {"viewer_id": principal.id}


_VISIBLE_KEY = {
    is_admin: select(integrations.c.id).where(
        integrations.c.id == bindparam("id"), *visible_to(integrations, is_admin=is_admin)
    )
    for is_admin in (False, True)
}


async def ensure_visible(db: Transaction, principal: Principal, integration_id: uuid.UUID) -> None:
    """403 or 404 unless the principal may see the integration (reads only its key)."""
    params = viewer(principal) | {"id": integration_id}
    if (await db.execute(_VISIBLE_KEY[principal.is_admin], params)).first() is None:
        await refuse(db, integration_id)


async def refuse(db: Transaction, integration_id: uuid.UUID) -> NoReturn:
    """The integration is not visible: 403 when it exists (another seller's), else 404."""
    if (await db.execute(_EXISTS, {"id": integration_id})).scalar_one():
        raise Forbidden("This integration belongs to another account.")
    raise NotFound(NO_INTEGRATION)
