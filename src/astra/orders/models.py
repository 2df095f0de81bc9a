from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Numeric, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from astra.db.base import Base
from astra.integrations.models import owned_through_integration


class Order(Base):
    """The latest known version of one order of one integration's store."""

    __tablename__ = "orders"
    __table_args__ = (
        owned_through_integration("orders_integration_fkey"),
        UniqueConstraint(
            "integration_id", "platform_order_id", name="orders_integration_order_key"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    integration_id: Mapped[uuid.UUID]
    # The integration's owner, denormalised so the RLS policy needs no join.
    user_id: Mapped[uuid.UUID]
    platform: Mapped[str] = mapped_column(String(16))
    platform_order_id: Mapped[str] = mapped_column(String(64))
    order_number: Mapped[str | None] = mapped_column(String(100))
    total: Mapped[Decimal | None] = mapped_column(Numeric(asdecimal=True))
    currency: Mapped[str | None] = mapped_column(String(10))
    financial_status: Mapped[str | None] = mapped_column(String(50))
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Buyers' personal data, and large: loaded only when asked for by name.
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB, deferred=True, deferred_raiseload=True)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
