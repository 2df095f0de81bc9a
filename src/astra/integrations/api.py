"""JSON routes for integrations: thin wrappers over the service."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from astra import connections as connection
from astra.auth.deps import CurrentUser
from astra.db.session import Db
from astra.db.tables import WebhookStatus
from astra.http import FastJSONResponse, SettingsDep, error_responses
from astra.integrations import service
from astra.integrations.schemas import (
    ConnectionCheckRead,
    DeliveryList,
    DeliveryRead,
    IntegrationCreate,
    IntegrationCreated,
    IntegrationPage,
    IntegrationRead,
    IntegrationUpdate,
    RemoteWebhookRead,
    WebhookSecretRead,
    WebhookSecretUpdate,
    WebhooksRead,
)
from astra.integrations.service import IntegrationRow
from astra.pagination import Page
from astra.settings import Settings
from astra.stores.api import RemoteWebhook
from astra.stores.net import Resolver
from astra.sync import state as sync_state
from astra.sync.queue import defer_sync

router = APIRouter(prefix="/api/integrations", tags=["integrations"])


async def _store_resolver(request: Request) -> Resolver:
    """How store domains are resolved (app.state, so tests can point one at 127.0.0.1)."""
    resolver: Resolver = request.app.state.store_resolver
    return resolver


StoreResolver = Annotated[Resolver, Depends(_store_resolver)]


def webhook_base(request: Request, settings: Settings) -> str:
    """The public origin stores post to: ASTRA_PUBLIC_URL, else this request's origin."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


# The row's connection columns and their names in the JSON's `connection` object.
CONNECTION_FIELDS = {
    "checked_at": "checked_at",
    "check_problem": "problem",
    "check_message": "message",
    "shop_name": "shop_name",
    "webhooks_status": "webhooks",
    "proven": "proven",
    "superseded": "superseded",
}


def webhook_url(base: str, integration_id: uuid.UUID) -> str:
    return f"{base}/api/webhooks/order?id={integration_id}"


def to_json(row: IntegrationRow, base: str) -> dict[str, Any]:
    """The integration's JSON (the IntegrationRead shape), built without a model round."""
    item = row._asdict()
    item["connection"] = {name: item.pop(column) for column, name in CONNECTION_FIELDS.items()}
    item["webhook_url"] = webhook_url(base, row.id)
    return item


def page_response(page: Page[IntegrationRow], base: str) -> Response:
    """The list's answer (the IntegrationPage shape)."""
    items = [to_json(row, base) for row in page.rows]
    return FastJSONResponse({"items": items, "next_cursor": page.next_cursor})


def created_response(row: IntegrationRow, secret: str, base: str) -> Response:
    """The create's answer (the IntegrationCreated shape): the secret shown this once."""
    created = to_json(row, base) | {"webhook_secret": secret}
    return FastJSONResponse(created, status_code=status.HTTP_201_CREATED)


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
    return page_response(page, webhook_base(request, settings))


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
    return created_response(row, secret, webhook_base(request, settings))


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
async def delete_integration(
    integration_id: uuid.UUID,
    db: Db,
    user: CurrentUser,
    settings: SettingsDep,
    resolver: StoreResolver,
) -> Response:
    """Also removes the webhooks Astra registered at the store, best effort: a store that
    cannot be reached never blocks the delete."""
    await connection.remove_webhooks_quietly(
        db, user, integration_id, settings=settings, resolver=resolver
    )
    await service.delete_integration(db, user, integration_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{integration_id}/check", responses=error_responses(401, 403, 404, 422))
async def check_connection(
    integration_id: uuid.UUID,
    request: Request,
    db: Db,
    user: CurrentUser,
    settings: SettingsDep,
    resolver: StoreResolver,
) -> ConnectionCheckRead:
    """Test the stored credentials against the store itself. Always 200: what went wrong is
    `problem`, with a sentence saying what to do. Credentials that work for the first time
    queue the store's first sync (every order it has) by themselves."""
    result = await connection.check_connection(
        db, user, integration_id, settings=settings, resolver=resolver
    )
    if result.ok and (await sync_state.get_sync(db, user, integration_id)).state == "never":
        await sync_state.request_sync(db, user, integration_id)
        await defer_sync(request.app.state.jobs, integration_id)
    return ConnectionCheckRead(
        ok=result.ok,
        problem=result.problem,
        message=result.message,
        shop_name=result.shop_name,
        checked_at=result.checked_at,
    )


@router.post("/{integration_id}/webhooks", responses=error_responses(401, 403, 404, 409, 422))
async def set_up_webhooks(
    integration_id: uuid.UUID,
    request: Request,
    db: Db,
    user: CurrentUser,
    settings: SettingsDep,
    resolver: StoreResolver,
) -> WebhooksRead:
    """Register the order webhooks at the store (idempotent: a second call creates nothing
    new, and re-enables a disabled one). 409 with `problem` when the store refuses."""
    address = webhook_url(webhook_base(request, settings), integration_id)
    return _webhooks(
        await connection.set_up_webhooks(
            db, user, integration_id, address=address, settings=settings, resolver=resolver
        )
    )


@router.get("/{integration_id}/webhooks", responses=error_responses(401, 403, 404, 409, 422))
async def read_webhooks(
    integration_id: uuid.UUID,
    request: Request,
    db: Db,
    user: CurrentUser,
    settings: SettingsDep,
    resolver: StoreResolver,
) -> WebhooksRead:
    """The order webhooks as the store has them now: active, disabled or missing."""
    address = webhook_url(webhook_base(request, settings), integration_id)
    return _webhooks(
        await connection.read_webhooks(
            db, user, integration_id, address=address, settings=settings, resolver=resolver
        )
    )


def _webhooks(hooks: list[RemoteWebhook]) -> WebhooksRead:
    return WebhooksRead(
        webhooks=[
            RemoteWebhookRead(topic=h.topic, remote_id=h.remote_id, status=WebhookStatus(h.status))
            for h in hooks
        ]
    )


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
