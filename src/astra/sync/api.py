"""JSON routes for syncs: thin wrappers over the state module (the job queue runs them)."""

from __future__ import annotations

import uuid
from dataclasses import asdict

from fastapi import APIRouter, Request, status

from astra.auth.deps import CurrentUser
from astra.db.session import Db
from astra.http import error_responses
from astra.sync import state
from astra.sync.queue import defer_sync
from astra.sync.schemas import SyncRead

router = APIRouter(prefix="/api/integrations", tags=["sync"])


def to_read(sync: state.SyncState) -> SyncRead:
    return SyncRead.model_validate(asdict(sync))


@router.post(
    "/{integration_id}/sync",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def request_sync(
    integration_id: uuid.UUID, request: Request, db: Db, user: CurrentUser
) -> SyncRead:
    """Queue an import of the store's orders: all of them the first time, then those
    updated since the last sync. Asking while one is queued or running returns that one."""
    sync = await state.request_sync(db, user, integration_id)
    if sync.state == "queued":
        await defer_sync(request.app.state.jobs, integration_id)
    return to_read(sync)


@router.get("/{integration_id}/sync", responses=error_responses(401, 403, 404, 422))
async def get_sync(integration_id: uuid.UUID, db: Db, user: CurrentUser) -> SyncRead:
    """The integration's sync: the running one's progress, or how the last one ended."""
    return to_read(await state.get_sync(db, user, integration_id))
