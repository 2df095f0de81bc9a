from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from astra.db.tables import DeliveryOutcome, Platform
from astra.stores.domains import InvalidDomain, validate_domain

# PostgreSQL text cannot hold NUL; refuse it here instead of failing in the database.
StoreName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00]*$"),
]
RawDomain = Annotated[str, Field(min_length=1, max_length=2048)]
# The store's Admin API access token: write-only, stored encrypted, never in a response.
AdminAccessToken = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=r"^[^\x00]*$"),
    Field(
        description="The store's Admin API access token. Write-only: stored encrypted "
        "and never returned (see has_admin_access_token).",
        json_schema_extra={"writeOnly": True},
    ),
]


def _checked_domain(value: str, info: ValidationInfo) -> str:
    platform = info.data.get("type")
    if platform is None:
        # The type is missing or invalid and has its own error; check only the shape.
        platform = Platform.woocommerce
    try:
        return validate_domain(platform, value)
    except InvalidDomain as exc:
        raise PydanticCustomError("domain", str(exc)) from None


class IntegrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StoreName
    type: Platform
    domain: RawDomain
    admin_access_token: AdminAccessToken | None = None

    _domain = field_validator("domain")(_checked_domain)


class IntegrationUpdate(BaseModel):
    """Any subset of the editable fields; the domain is checked against the final type."""

    model_config = ConfigDict(extra="forbid")

    name: StoreName | None = None
    type: Platform | None = None
    domain: RawDomain | None = None
    is_active: bool | None = None
    admin_access_token: AdminAccessToken | None = None

    @field_validator("name", "type", "domain", "is_active", "admin_access_token", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise PydanticCustomError("not_null", "This field cannot be empty.")
        return value


class IntegrationRead(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    owner_email: str
    name: str
    type: Platform
    domain: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
    webhook_url: str
    order_count: int = Field(default=0, description="Orders received and not deleted.")
    last_order_at: datetime | None = Field(
        default=None, description="When the newest of those orders first arrived."
    )
    has_admin_access_token: bool = Field(
        default=False, description="Whether an Admin API access token is stored."
    )


class IntegrationCreated(IntegrationRead):
    webhook_secret: str = Field(
        description="Shown once: store it in the platform's webhook settings."
    )


# Shopify's signing keys are hex, WooCommerce's may hold any printable ASCII.
WebhookSecret = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=16, max_length=200, pattern=r"^[!-~]+$"),
]


class WebhookSecretUpdate(BaseModel):
    """Empty (or no body): rotate to a new random secret. With `webhook_secret`: use that
    key, e.g. the one Shopify shows under Settings > Notifications > Webhooks."""

    model_config = ConfigDict(extra="forbid")

    webhook_secret: WebhookSecret | None = None


class WebhookSecretRead(BaseModel):
    webhook_secret: str = Field(description="Shown once: the secret deliveries are signed with.")
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the replaced secret still verifies deliveries."
    )


class IntegrationPage(BaseModel):
    items: list[IntegrationRead]
    next_cursor: str | None


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    delivery_id: str = Field(description="The platform's delivery id (the idempotency key).")
    topic: str
    platform_order_id: str | None
    outcome: DeliveryOutcome = Field(
        description=(
            "stored: order created or updated; stale: older than the stored version, kept "
            "the newer; deleted: order marked deleted; ignored: not an order change; held: "
            "received while the integration was inactive, and stored all the same; "
            "refused: signed, but not acted on (see reason)."
        )
    )
    body_bytes: int
    received_at: datetime
    reason: str | None = Field(
        default=None, description="Why a refused delivery was refused; null otherwise."
    )


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
