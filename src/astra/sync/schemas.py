from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from astra.db.tables import SyncStatus


class SyncRead(BaseModel):
    """An integration's sync: the current run's progress, or the last run's outcome."""

    state: SyncStatus
    imported: int = Field(description="Orders of the current (or last) run taken in so far.")
    total: int | None = Field(
        description="How many orders the run's listing holds, when the store says (not Shopify)."
    )
    missed_by_webhook: int = Field(
        description="Order changes syncs found that no webhook had delivered, over every run."
    )
    started_at: datetime | None
    finished_at: datetime | None
    last_synced_at: datetime | None = Field(description="When the last successful sync ended.")
    error: str | None = Field(description="Why the last run failed, in a sentence.")
