from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from astra.db.tables import OrderOrigin, Platform


class OrderRead(BaseModel):
    """An order as the store last described it; the raw payload stays in the database."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    integration_id: uuid.UUID
    platform: Platform
    platform_order_id: str = Field(description="The store's own order id.")
    order_number: str | None = Field(description='What the store shows: "#1001", "1001".')
    total: Decimal | None
    currency: str | None
    financial_status: str | None = Field(
        description="Shopify's financial_status; WooCommerce's order status."
    )
    placed_at: datetime | None
    source_updated_at: datetime | None = Field(description="The store's updated_at.")
    received_at: datetime = Field(description="When Astra first received the order.")
    updated_at: datetime
    origin: OrderOrigin = Field(
        description="How Astra first learned of the order: a webhook, or a sync that found it."
    )


class OrderPage(BaseModel):
    items: list[OrderRead]
    next_cursor: str | None
