"""Integration use cases. Every read goes through `visible_integrations`: admins see all
rows, sellers their own; RLS enforces the same rule again inside PostgreSQL."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select, text, true, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from astra.auth.models import User
from astra.auth.principal import Principal
from astra.errors import Conflict, Forbidden, InvalidInput, NotFound
from astra.integrations.domains import InvalidDomain, validate_domain
from astra.integrations.models import Integration
from astra.integrations.schemas import IntegrationCreate, IntegrationUpdate
from astra.orders.models import Order
from astra.pagination import decode_cursor, encode_cursor

EXISTS = text("SELECT public.app_integration_exists(:id)")
DOMAIN_TAKEN = "This store is already connected."


@dataclass(frozen=True, slots=True)
class IntegrationRow:
    integration: Integration
    owner_email: str
    order_count: int = 0
    last_order_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IntegrationPage:
    rows: list[IntegrationRow]
    next_cursor: str | None


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def visible_integrations(
    principal: Principal,
) -> Select[Integration, str, int, datetime | None]:
    """The one place that decides which integrations a principal may see, each with its
    live orders' count and newest arrival (one index-only lookup per integration)."""
    stats = (
        select(
            func.count().label("order_count"),
            func.max(Order.received_at).label("last_order_at"),
        )
        .where(Order.integration_id == Integration.id, Order.deleted_at.is_(None))
        .lateral("order_stats")
    )
    query = (
        select(Integration, User.email, stats.c.order_count, stats.c.last_order_at)
        .join(User, User.id == Integration.user_id)
        .join(stats, true())
    )
    if not principal.is_admin:
        query = query.where(Integration.user_id == principal.id)
    return query


async def list_integrations(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> IntegrationPage:
    query = visible_integrations(principal).order_by(
        Integration.created_at.desc(), Integration.id.desc()
    )
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        query = query.where(tuple_(Integration.created_at, Integration.id) < (created_at, row_id))
    result = await session.execute(query.limit(limit + 1))
    rows = [IntegrationRow(*row) for row in result.all()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1].integration
        next_cursor = encode_cursor(last.created_at, last.id)
    return IntegrationPage(rows, next_cursor)


async def get_integration(
    session: AsyncSession, principal: Principal, integration_id: uuid.UUID
) -> IntegrationRow:
    row = (
        await session.execute(
            visible_integrations(principal).where(Integration.id == integration_id)
        )
    ).one_or_none()
    if row is None:
        if (await session.execute(EXISTS, {"id": integration_id})).scalar_one():
            raise Forbidden("This integration belongs to another account.")
        raise NotFound("No integration with this id.")
    return IntegrationRow(*row)


async def create_integration(
    session: AsyncSession, principal: Principal, data: IntegrationCreate
) -> tuple[IntegrationRow, str]:
    secret = new_webhook_secret()
    integration = Integration(
        user_id=principal.id,
        name=data.name,
        type=data.type,
        domain=data.domain,
        webhook_secret=secret,
    )
    session.add(integration)
    await _flush_unique(session)
    await session.refresh(integration)
    return IntegrationRow(integration, principal.email), secret


async def update_integration(
    session: AsyncSession, principal: Principal, integration_id: uuid.UUID, data: IntegrationUpdate
) -> IntegrationRow:
    row = await get_integration(session, principal, integration_id)
    integration = row.integration
    changes = data.model_dump(exclude_unset=True)
    if "type" in changes or "domain" in changes:
        platform = changes.get("type", integration.type)
        try:
            changes["domain"] = validate_domain(platform, changes.get("domain", integration.domain))
        except InvalidDomain as exc:
            raise InvalidInput(str(exc), field="domain") from None
    for field, value in changes.items():
        setattr(integration, field, value)
    if changes:
        await _flush_unique(session)
        await session.refresh(integration)
    return row


async def set_webhook_secret(
    session: AsyncSession,
    principal: Principal,
    integration_id: uuid.UUID,
    *,
    secret: str | None,
    grace: timedelta,
) -> Integration:
    """Replace the webhook secret with `secret`, or a new random one when None.

    The replaced secret keeps verifying for `grace` (the store may still sign with it for
    a while), measured on the database clock that the webhook lookup also uses. Only one
    previous secret is kept: rotating again within the grace period drops the older one.
    """
    integration = (await get_integration(session, principal, integration_id)).integration
    new_secret = secret if secret is not None else new_webhook_secret()
    if new_secret != integration.webhook_secret:
        if grace > timedelta(0):
            integration.previous_webhook_secret = integration.webhook_secret
            integration.previous_secret_expires_at = func.now() + grace
        else:
            integration.previous_webhook_secret = None
            integration.previous_secret_expires_at = None
        integration.webhook_secret = new_secret
        await session.flush()
        await session.refresh(integration)
    return integration


async def delete_integration(
    session: AsyncSession, principal: Principal, integration_id: uuid.UUID
) -> None:
    row = await get_integration(session, principal, integration_id)
    await session.delete(row.integration)
    await session.flush()


async def _flush_unique(session: AsyncSession) -> None:
    """Flush, turning the domain's unique violation into a 409.

    The unique constraint is the only duplicate check: a SELECT before the INSERT would
    race with a concurrent create of the same store.
    """
    try:
        await session.flush()
    except IntegrityError as exc:
        constraint = getattr(exc.orig.__cause__, "constraint_name", None) if exc.orig else None
        if constraint == "integrations_domain_key":
            raise Conflict(DOMAIN_TAKEN) from None
        raise
