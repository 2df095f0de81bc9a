"""Jobs act as the integration's owner, so row-level security guards them like any request.

A job names only the integration. The queue carries no authority (the runtime role writes
it freely, as every worker must), so the owner is read at run time from the integration
itself, through the definer function `app_integration_owner`, and the job's transaction
acts as that owner: it reads and writes that seller's rows and no one else's.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text

from astra.db.session import Database, Transaction, act_as, begin

OWNER_OF = text("SELECT public.app_integration_owner(:id)")


class IntegrationGone(Exception):
    """The integration was deleted after its job was queued: nothing is left to do."""

    def __init__(self, integration_id: uuid.UUID) -> None:
        super().__init__(f"integration {integration_id} no longer exists")
        self.integration_id = integration_id


@dataclass(frozen=True)
class OwnerTransaction:
    db: Transaction
    integration_id: uuid.UUID
    owner_id: uuid.UUID


@asynccontextmanager
async def acting_for(
    database: Database, integration_id: uuid.UUID
) -> AsyncIterator[OwnerTransaction]:
    """One transaction as the owner of `integration_id`: committed when the block ends,
    rolled back when it raises (a cancelled job included). Raises IntegrationGone."""
    async with begin(database) as db:
        owner_id = (await db.execute(OWNER_OF, {"id": integration_id})).scalar_one()
        if owner_id is None:
            raise IntegrationGone(integration_id)
        await act_as(db, owner_id)
        yield OwnerTransaction(db=db, integration_id=integration_id, owner_id=owner_id)
