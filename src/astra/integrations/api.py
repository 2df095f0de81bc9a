"""JSON routes for integrations: thin wrappers over the service."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from astra.auth.deps import CurrentUser
from astra.db.session import Db
from astra.http import FastJSONResponse, SettingsDep, error_responses
from astra.integrations import service
from astra.integrations.schemas import (
    DeliveryList,
    DeliveryRead,
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


def webhook_base(request: Request, settings: Settings) -> str:
    """The public origin stores post to: ASTRA_PUBLIC_URL, else this request's origin."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def to_json(row: IntegrationRow, base: str) -> dict[str, Any]:
    """The integration's JSON (the IntegrationRead shape), built without a model round."""
    item = row._asdict()
    item["webhook_url"] = f"{base}/api/webhooks/order?id={row.id}"
    return item


def to_read(row: IntegrationRow, base: str) -> IntegrationRead:
    return IntegrationRead.model_validate(to_json(row, base))


@router.get("", response_model=IntegrationPage, responses=error_responses(401, 422))
async def list_integrations(
    request: Request,
    db: Db,
    user: CurrentUser,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    page = await service.list_integrations(db, user, limit=limit, cursor=cursor)
    base = webhook_base(request, settings)
    return FastJSONResponse(
        {"items": [to_json(row, base) for row in page.rows], "next_cursor": page.next_cursor}
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=IntegrationCreated,
    responses=error_responses(400, 401, 403, 409, 422),
)
async def create_integration(
    body: IntegrationCreate, request: Request, db: Db, user: CurrentUser, settings: SettingsDep
) -> Response:
    row, secret = await service.create_integration(
        db, user, body, encryption_key=settings.encryption_key
    )
    created = to_json(row, webhook_base(request, settings)) | {"webhook_secret": secret}
    return FastJSONResponse(created, status_code=status.HTTP_201_CREATED)


@router.get(
    "/{integration_id}",
    response_model=IntegrationRead,
    responses=error_responses(401, 403, 404, 422),
)
async def get_integration(
    integration_id: uuid.UUID, request: Request, db: Db, user: CurrentUser, settings: SettingsDep
) -> Response:
    row = await service.get_integration(db, user, integration_id)
    return FastJSONResponse(to_json(row, webhook_base(request, settings)))


@router.put(
    "/{integration_id}",
    response_model=IntegrationRead,
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
async def update_integration(
    integration_id: uuid.UUID,
    body: IntegrationUpdate,
    request: Request,
    db: Db,
    user: CurrentUser,
    settings: SettingsDep,
) -> Response:
    row = await service.update_integration(
        db, user, integration_id, body, encryption_key=settings.encryption_key
    )
    return FastJSONResponse(to_json(row, webhook_base(request, settings)))


@router.post("/{integration_id}/secret", responses=error_responses(400, 401, 403, 404, 422))
async def set_webhook_secret(
    integration_id: uuid.UUID,
    db: Db,
    user: CurrentUser,
    settings: SettingsDep,
    body: WebhookSecretUpdate | None = None,
) -> WebhookSecretRead:
    """Rotate the webhook secret, or set the store's own signing key; the replaced secret
    keeps verifying for the grace period (ASTRA_SECRET_GRACE_HOURS)."""
    state = await service.set_webhook_secret(
        db,
        user,
        integration_id,
        secret=body.webhook_secret if body else None,
        grace=timedelta(hours=settings.secret_grace_hours),
        encryption_key=settings.encryption_key,
    )
    return WebhookSecretRead(
        webhook_secret=state.webhook_secret,
        previous_secret_expires_at=state.previous_secret_expires_at,
    )


@router.delete(
    "/{integration_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 422),
)
async def delete_integration(integration_id: uuid.UUID, db: Db, user: CurrentUser) -> Response:
    await service.delete_integration(db, user, integration_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{integration_id}/deliveries", responses=error_responses(401, 403, 404, 422))
async def list_deliveries(
    integration_id: uuid.UUID,
    db: Db,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DeliveryList:
    """The integration's newest webhook deliveries: time, topic, outcome."""
    deliveries = await service.list_deliveries(db, user, integration_id, limit=limit)
    return DeliveryList(items=[DeliveryRead.model_validate(d) for d in deliveries])
