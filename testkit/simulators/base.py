"""What every simulated store has: a domain, a clock, a seeded order list, and the knobs
tests turn to make it misbehave the way real stores do (stall, redirect, answer too much)."""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from testkit.simulators.server import StoreServer

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@dataclass
class SimOrder:
    """An order as the store holds it; each platform renders it in its own shapes."""

    id: int
    number: int
    created_at: datetime
    updated_at: datetime
    total: Decimal
    currency: str
    email: str
    paid: bool = True
    # WooCommerce's trash; Shopify deletes for good.
    trashed: bool = False


def seeded_orders(
    seed: int, count: int, *, first_id: int, end: datetime, days: int = 120
) -> list[SimOrder]:
    """`count` orders spread over the `days` before `end`, the same for the same seed; each
    changed within three days of being placed, and never after `end`."""
    rng = random.Random(seed)  # noqa: S311 - repeatable test data, not secrets
    orders = []
    order_id = first_id
    for index in range(count):
        order_id += rng.randrange(1, 50)
        created = end - timedelta(days=days) + timedelta(minutes=rng.randrange(days * 24 * 60))
        changed = created + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        orders.append(
            SimOrder(
                id=order_id,
                number=1001 + index,
                created_at=created,
                updated_at=min(changed, end),
                total=Decimal(rng.randrange(500, 50000)) / 100,
                currency="EUR",
                email=f"buyer{index}@example.com",
                paid=rng.random() < 0.9,
            )
        )
    return orders


class SimulatedStore(ABC):
    def __init__(self, domain: str, *, seed: int, order_count: int, first_order_id: int) -> None:
        self.domain = domain
        # Knobs.
        self.stall_seconds = 0.0
        self.redirect_to: str | None = None
        self.response_padding = 0
        # Answers given before the store's own, one per request: (status, headers).
        self.busy_answers: list[tuple[int, dict[str, str]]] = []
        self._clock_offset = timedelta()
        self._first_order_id = first_order_id
        self.orders: dict[int, SimOrder] = {}
        self.seed(order_count, seed=seed)
        self._server: StoreServer | None = None
        self._delivery_client: httpx.AsyncClient | None = None

    def attach(self, server: StoreServer) -> None:
        self._server = server

    @property
    def delivery_client(self) -> httpx.AsyncClient:
        """Where the store's webhook deliveries go out: the server's real HTTPS client unless
        a test hands it another (for instance one that reaches an in-process app)."""
        if self._delivery_client is not None:
            return self._delivery_client
        assert self._server is not None, "add the store to a StoreServer first"
        return self._server.delivery_client

    @delivery_client.setter
    def delivery_client(self, client: httpx.AsyncClient) -> None:
        self._delivery_client = client

    def now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Let time pass for the store (tokens expire, the throttle bucket refills)."""
        self._clock_offset += timedelta(seconds=seconds)

    def seed(
        self, count: int, *, seed: int = 1, days: int = 120, ago: timedelta = timedelta()
    ) -> None:
        """Replace the orders with `count` seeded ones placed over the `days` before `ago`
        ago, none changed since."""
        end = self.now() - ago
        self.orders = {
            order.id: order
            for order in seeded_orders(
                seed, count, first_id=self._first_order_id, end=end, days=days
            )
        }

    def answer_busy(
        self, status: int = 429, *, times: int = 1, retry_after: str | None = None
    ) -> None:
        """Answer the next `times` requests with `status` (and a Retry-After), as a store
        under load or restarting answers, before serving again."""
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        self.busy_answers += [(status, headers)] * times

    def add_order(self, **fields: object) -> SimOrder:
        now = self.now()
        order_id = max(self.orders, default=1000) + 7
        values: dict[str, object] = {
            "id": order_id,
            "number": 1001 + len(self.orders),
            "created_at": now,
            "updated_at": now,
            "total": Decimal("42.50"),
            "currency": "EUR",
            "email": "new@example.com",
            **fields,
        }
        order = SimOrder(**values)  # type: ignore[arg-type]
        self.orders[order.id] = order
        return order

    def touch(self, order: SimOrder) -> None:
        """The order changed at the store just now."""
        order.updated_at = max(self.now(), order.updated_at + timedelta(seconds=1))

    async def serve(self, request: Request, path: str) -> Response:
        if self.stall_seconds:
            await asyncio.sleep(self.stall_seconds)
        if self.redirect_to is not None:
            return Response(status_code=301, headers={"Location": self.redirect_to})
        if self.busy_answers:
            status, headers = self.busy_answers.pop(0)
            return JSONResponse(
                {"errors": "Too Many Requests"}, status_code=status, headers=headers
            )
        response = await self.handle(request, path)
        if self.response_padding:
            # Trailing whitespace keeps JSON valid while making it as big as asked.
            headers = {k: v for k, v in response.headers.items() if k != "content-length"}
            return Response(
                bytes(response.body) + b" " * self.response_padding,
                status_code=response.status_code,
                headers=headers,
            )
        return response

    @abstractmethod
    async def handle(self, request: Request, path: str) -> Response:
        """Answer `request` for `path`, below the store's address."""
