from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, String, text
from sqlalchemy.orm import Mapped, mapped_column

from astra.db.base import Base
from astra.integrations.models import owned_through_integration


class DeliveryOutcome(StrEnum):
    """What an accepted delivery did; every one of them is recorded."""

    stored = "stored"  # the order was created or brought up to date
    stale = "stale"  # an older version than the one stored: kept the newer
    deleted = "deleted"  # the store deleted the order: marked deleted
    ignored = "ignored"  # not an order change this module keeps (another topic)
    held = "held"  # arrived while the integration was paused: the order was still stored


class WebhookDelivery(Base):
    """One accepted delivery: the idempotency record and the delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (owned_through_integration("webhook_deliveries_integration_fkey"),)

    integration_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The platform's delivery id (for WooCommerce, with a digest of the body: see platforms).
    delivery_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    user_id: Mapped[uuid.UUID]
    topic: Mapped[str] = mapped_column(String(100))
    platform_order_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    body_bytes: Mapped[int]
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
