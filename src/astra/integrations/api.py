"""JSON routes for integrations: thin wrappers over the service."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from astra.auth.deps import CurrentUser
from astra.db.session import DbSession
from astra.http import error_responses
from astra.integrations import service
from astra.integrations.schemas import (
    IntegrationCreate,
    IntegrationCreated,
    IntegrationPage,
    IntegrationRead,
    IntegrationUpdate,
    WebhookSecretRead,
    WebhookSecretUpdate,
)
from astra.integrations.service import IntegrationRow
from astra.settings import Settings

router = APIRouter(prefix="/api/integrations", tags=["integrations"])


def webhook_base(request: Request) -> str:
    """The public origin stores post to: ASTRA_PUBLIC_URL, else this request's origin."""
    settings: Settings = request.app.state.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def to_read(row: IntegrationRow, base: str) -> IntegrationRead:
    integration = row.integration
    return IntegrationRead(
        id=integration.id,
        user_id=integration.user_id,
        owner_email=row.owner_email,
        name=integration.name,
        type=integration.type,
        domain=integration.domain,
        is_active=integration.is_active,
        created_at=integration.created_at,
        updated_at=integration.updated_at,
        webhook_url=f"{base}/api/webhooks/order?id={integration.id}",
        order_count=row.order_count,
        last_order_at=row.last_order_at,
    )


@router.get("", responses=error_responses(401, 422))
async def list_integrations(
    request: Request,
    session: DbSession,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> IntegrationPage:
    page = await service.list_integrations(session, user, limit=limit, cursor=cursor)
    base = webhook_base(request)
    return IntegrationPage(
        items=[to_read(row, base) for row in page.rows], next_cursor=page.next_cursor
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 422),
)
async def create_integration(
    body: IntegrationCreate, request: Request, session: DbSession, user: CurrentUser
) -> IntegrationCreated:
    row, secret = await service.create_integration(session, user, body)
    read = to_read(row, webhook_base(request))
    return IntegrationCreated(**read.model_dump(), webhook_secret=secret)


@router.get("/{integration_id}", responses=error_responses(401, 403, 404, 422))
async def get_integration(
    integration_id: uuid.UUID, request: Request, session: DbSession, user: CurrentUser
) -> IntegrationRead:
    row = await service.get_integration(session, user, integration_id)
    return to_read(row, webhook_base(request))


@router.put("/{integration_id}", responses=error_responses(401, 403, 404, 409, 422))
async def update_integration(
    integration_id: uuid.UUID,
    body: IntegrationUpdate,
    request: Request,
    session: DbSession,
    user: CurrentUser,
) -> IntegrationRead:
    row = await service.update_integration(session, user, integration_id, body)
    return to_read(row, webhook_base(request))


@router.post("/{integration_id}/secret", responses=error_responses(401, 403, 404, 422))
async def set_webhook_secret(
    integration_id: uuid.UUID,
    request: Request,
    session: DbSession,
    user: CurrentUser,
    body: WebhookSecretUpdate | None = None,
) -> WebhookSecretRead:
    """Rotate the webhook secret, or set the store's own signing key; the replaced secret
    keeps verifying for the grace period (ASTRA_SECRET_GRACE_HOURS)."""
    settings: Settings = request.app.state.settings
    integration = await service.set_webhook_secret(
        session,
        user,
        integration_id,
        secret=body.webhook_secret if body else None,
        grace=timedelta(hours=settings.secret_grace_hours),
    )
    return WebhookSecretRead(
        webhook_secret=integration.webhook_secret,
        previous_secret_expires_at=integration.previous_secret_expires_at,
    )


@router.delete(
    "/{integration_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 422),
)
async def delete_integration(
    integration_id: uuid.UUID, session: DbSession, user: CurrentUser
) -> Response:
    await service.delete_integration(session, user, integration_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
