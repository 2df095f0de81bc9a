"""How long the delivery log keeps a delivery: ASTRA_DELIVERY_RETENTION_DAYS, then it goes.

Over every seller at once, so not as anyone: the definer function `app_prune_deliveries`
(migration 0007) deletes one bounded batch, oldest first, and never a delivery younger than
a day. Each batch is its own transaction: locks stay short, webhooks keep landing meanwhile,
and a worker killed halfway has kept what it already removed.
"""

from __future__ import annotations

from sqlalchemy import text

from astra.db.session import Database, begin

PRUNE_BATCH = text("SELECT public.app_prune_deliveries(:days, :batch)")
BATCH_SIZE = 1000


async def prune_deliveries(
    database: Database, *, retention_days: int, batch_size: int = BATCH_SIZE
) -> list[int]:
    """Delete deliveries older than `retention_days`; returns each batch's count."""
    batches: list[int] = []
    while True:
        async with begin(database) as db:
            result = await db.execute(PRUNE_BATCH, {"days": retention_days, "batch": batch_size})
            removed = int(result.scalar_one())
        if removed:
            batches.append(removed)
        if removed < batch_size:
            return batches
