"""Group commit for order webhooks: deliveries that arrive within a short window of each
other are received in one transaction, so one COMMIT (one WAL flush) makes them all
durable. Each request is still answered only once its own delivery is committed.

The window opens with the first delivery of a batch and lasts ASTRA_WEBHOOK_BATCH_MS; a
batch reaching ASTRA_WEBHOOK_BATCH_MAX deliveries goes at once. Several batches may be
in flight, each on its own pooled connection. With a window of 0 every delivery has a
transaction of its own, as before group commit. What each batch does, and what happens
when its transaction fails, is `service.receive_batch`.

One batcher per process, opened and drained by the app's lifespan: `drain` refuses new
deliveries (503, so the platform retries) and waits until every delivery accepted has
been committed or answered, before the pool closes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from astra.db.session import Database
from astra.webhooks import service
from astra.webhooks.schemas import Receipt
from astra.webhooks.service import Arrival, DeliveryFailed

log = logging.getLogger(__name__)

SHUTTING_DOWN = "The service is shutting down; send the delivery again later."


@dataclass
class BatchCounts:
    """What the batcher did since it opened (for tests and metrics)."""

    # Batch transactions begun, and those that committed.
    batches: int = 0
    committed: int = 0
    # Deliveries that went into a batch, and the largest batch.
    deliveries: int = 0
    largest: int = 0
    # Deliveries received alone: with no window, or again after their batch failed.
    alone: int = 0


class WebhookBatcher:
    def __init__(
        self, database: Database, *, encryption_key: bytes, window_ms: float, max_size: int
    ) -> None:
        self._database = database
        self._key = encryption_key
        self._window = window_ms / 1000
        self._max_size = max_size
        self._waiting: list[Arrival] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[object]] = set()
        self._draining = False
        self.counts = BatchCounts()

    @property
    def waiting(self) -> int:
        """Deliveries waiting for their batch to start."""
        return len(self._waiting)

    async def receive(
        self, integration_id: uuid.UUID, headers: Mapping[str, str], body: bytes
    ) -> Receipt:
        """The delivery's receipt, once it is committed; raises what the route answers."""
        if self._draining:
            raise DeliveryFailed(SHUTTING_DOWN)
        if not self._window:
            self.counts.alone += 1
            alone = asyncio.create_task(
                service.receive_alone(
                    self._database,
                    integration_id=integration_id,
                    headers=headers,
                    body=body,
                    encryption_key=self._key,
                )
            )
            self._track(alone)
            # Shielded: a request that goes away leaves its transaction to end as it would.
            return await asyncio.shield(alone)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Receipt] = loop.create_future()
        self._waiting.append(
            Arrival(integration_id, headers, body, contextvars.copy_context(), answer)
        )
        if len(self._waiting) >= self._max_size:
            self._send()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._send)
        return await answer

    def _send(self) -> None:
        """Start the waiting deliveries' batch."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting = self._waiting, []
        if not batch:
            return
        self.counts.batches += 1
        self.counts.deliveries += len(batch)
        self.counts.largest = max(self.counts.largest, len(batch))
        # A context of its own: the batch's logs belong to no one request.
        self._track(asyncio.create_task(self._run(batch), context=contextvars.Context()))

    def _track(self, task: asyncio.Task[object]) -> None:
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[Arrival]) -> None:
        try:
            if await service.receive_batch(self._database, batch, self._key):
                self.counts.committed += 1
            else:
                self.counts.alone += len(batch)
        except BaseException as exc:
            # Not expected (receive_batch settles every delivery): no request waits forever.
            for arrival in batch:
                arrival.settle(
                    error=exc if isinstance(exc, Exception) else DeliveryFailed(SHUTTING_DOWN)
                )
            raise

    async def drain(self) -> None:
        """Refuse new deliveries; return once every accepted one is committed or answered."""
        self._draining = True
        self._send()
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        log.info("webhook batcher drained", extra=asdict(self.counts))
