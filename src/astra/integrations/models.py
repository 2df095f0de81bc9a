from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, ForeignKeyConstraint, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from astra.db.base import Base


class Platform(StrEnum):
    shopify = "shopify"
    woocommerce = "woocommerce"


class Integration(Base):
    __tablename__ = "integrations"

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(16))
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    webhook_secret: Mapped[str]
    # After a rotation the old secret keeps verifying until previous_secret_expires_at.
    previous_webhook_secret: Mapped[str | None]
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Fernet token; never returned by the API.
    admin_access_token: Mapped[str | None]
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )


def owned_through_integration(name: str) -> ForeignKeyConstraint:
    """(integration_id, user_id) -> integrations (id, user_id): a child row's denormalised
    owner, which its RLS policy reads, is always its integration's owner."""
    return ForeignKeyConstraint(
        ["integration_id", "user_id"],
        ["integrations.id", "integrations.user_id"],
        name=name,
        ondelete="CASCADE",
        onupdate="CASCADE",
    )
