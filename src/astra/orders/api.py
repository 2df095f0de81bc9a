"""JSON routes for orders: thin wrappers over the service."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from astra.auth.deps import CurrentUser
from astra.db.session import Db
from astra.http import error_responses
from astra.orders import service
from astra.orders.schemas import OrderPage, OrderRead

router = APIRouter(prefix="/api/orders", tags=["orders"])


@router.get("", responses=error_responses(401, 403, 404, 422))
async def list_orders(
    db: Db,
    user: CurrentUser,
    integration_id: Annotated[
        uuid.UUID | None, Query(description="Only this integration's orders.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderPage:
    """Orders the caller may see, newest first; deleted orders are left out."""
    page = await service.list_orders(
        db, user, integration_id=integration_id, limit=limit, cursor=cursor
    )
    return OrderPage(
        items=[OrderRead.model_validate(order) for order in page.rows],
        next_cursor=page.next_cursor,
    )
