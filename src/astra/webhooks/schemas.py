from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from astra.webhooks.models import DeliveryOutcome

Receipt = Literal["stored", "stale", "deleted", "ignored", "held", "duplicate", "ping"]


class WebhookReceipt(BaseModel):
    outcome: Receipt = Field(
        description=(
            "stored, stale, deleted, ignored or held (see DeliveryRead.outcome); "
            "duplicate: this delivery was already recorded; ping: WooCommerce's hello."
        )
    )


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    delivery_id: str = Field(description="The platform's delivery id (the idempotency key).")
    topic: str
    platform_order_id: str | None
    outcome: DeliveryOutcome = Field(
        description=(
            "stored: order created or updated; stale: older than the stored version, kept "
            "the newer; deleted: order marked deleted; ignored: not an order change; held: "
            "received while the integration was inactive, and stored all the same."
        )
    )
    body_bytes: int
    received_at: datetime


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
