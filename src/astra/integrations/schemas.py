from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from astra.db.tables import CredentialsKind, DeliveryOutcome, Platform, WebhookStatus
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


# One credential value as the store's admin shows it: printable ASCII, no spaces.
CredentialValue = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=8, max_length=500, pattern=r"^[!-~]+$"),
]


class _Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"writeOnly": True})
    kind: ClassVar[CredentialsKind]
    platform: ClassVar[Platform]


class ShopifyAppCredentials(_Credentials):
    """A Shopify app from the Dev Dashboard (Settings): Astra exchanges the client id and
    secret for access tokens (client credentials grant) and renews them."""

    kind = CredentialsKind.shopify_app
    platform = Platform.shopify
    client_id: CredentialValue
    client_secret: CredentialValue


class ShopifyTokenCredentials(_Credentials):
    """A legacy custom app made in the store's admin: its Admin API access token, and its
    API secret key, which signs the webhooks Astra registers (without it they cannot be
    verified, so Astra does not register them)."""

    kind = CredentialsKind.shopify_token
    platform = Platform.shopify
    access_token: CredentialValue
    client_secret: CredentialValue | None = None


class WooCommerceCredentials(_Credentials):
    """A WooCommerce REST API key (WooCommerce > Settings > Advanced > REST API), with
    Read/Write permission so Astra can set the webhooks up."""

    kind = CredentialsKind.woocommerce_key
    platform = Platform.woocommerce
    consumer_key: CredentialValue
    consumer_secret: CredentialValue

    @field_validator("consumer_key", "consumer_secret")
    @classmethod
    def _prefixed(cls, value: str, info: ValidationInfo) -> str:
        what, prefix = ("key", "ck_") if info.field_name == "consumer_key" else ("secret", "cs_")
        if not value.startswith(prefix):
            raise PydanticCustomError(
                "credential",
                f"WooCommerce consumer {what}s start with {prefix}. Copy it from "
                "WooCommerce > Settings > Advanced > REST API.",
            )
        return value


# Write-only: stored encrypted, never returned (see has_credentials).
Credentials = ShopifyAppCredentials | ShopifyTokenCredentials | WooCommerceCredentials
WRONG_PLATFORM = "These credentials are for {kind}; this store is on {platform}."


def check_credentials_platform(credentials: Credentials | None, platform: Platform) -> None:
    """422 (at `credentials`) when the credentials are another platform's."""
    if credentials is not None and credentials.platform != platform:
        names = {Platform.shopify: "Shopify", Platform.woocommerce: "WooCommerce"}
        raise PydanticCustomError(
            "credentials_platform",
            WRONG_PLATFORM.format(kind=names[credentials.platform], platform=names[platform]),
        )


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
    credentials: Credentials | None = None

    _domain = field_validator("domain")(_checked_domain)

    @field_validator("credentials")
    @classmethod
    def _for_the_platform(cls, value: Credentials | None, info: ValidationInfo) -> Any:
        if "type" in info.data:
            check_credentials_platform(value, info.data["type"])
        return value

    @model_validator(mode="after")
    def _one_way_to_give_a_token(self) -> IntegrationCreate:
        if self.admin_access_token is not None and self.credentials is not None:
            raise PydanticCustomError(
                "credentials", "Give either credentials or admin_access_token, not both."
            )
        if self.admin_access_token is not None and self.type is not Platform.shopify:
            raise PydanticCustomError(
                "credentials", "An admin access token is a Shopify credential."
            )
        return self

    def given_credentials(self) -> Credentials | None:
        """The credentials, the old `admin_access_token` field meaning a token alone."""
        if self.admin_access_token is not None:
            return ShopifyTokenCredentials(access_token=self.admin_access_token)
        return self.credentials


class IntegrationUpdate(BaseModel):
    """Any subset of the editable fields; the domain is checked against the final type."""

    model_config = ConfigDict(extra="forbid")

    name: StoreName | None = None
    type: Platform | None = None
    domain: RawDomain | None = None
    is_active: bool | None = None
    admin_access_token: AdminAccessToken | None = None
    # null removes the stored credentials; checked against the final type by the service.
    credentials: Credentials | None = None

    @field_validator("name", "type", "domain", "is_active", "admin_access_token", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise PydanticCustomError("not_null", "This field cannot be empty.")
        return value


class ConnectionState(BaseModel):
    """The store's API connection as last checked; all null until the first check."""

    checked_at: datetime | None = None
    problem: str | None = Field(
        default=None, description="The last check's problem (null: it worked, or none yet)."
    )
    message: str | None = Field(default=None, description="The last check's sentence.")
    shop_name: str | None = None
    webhooks: WebhookStatus | None = Field(
        default=None,
        description="The registered order webhooks at a glance, as last seen at the store.",
    )
    proven: bool = Field(
        default=False, description="Working credentials proved this store is the seller's."
    )
    superseded: bool = Field(
        default=False,
        description="Another account proved the store with its own credentials.",
    )


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
    has_credentials: bool = Field(
        default=False, description="Whether credentials for the store's API are stored."
    )
    connection: ConnectionState = Field(default_factory=ConnectionState)


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


class ConnectionCheckRead(BaseModel):
    ok: bool
    problem: str | None = Field(
        description="null, no_credentials, invalid_credentials, wrong_store, missing_scope, "
        "store_unavailable, unreachable, timeout or refused_address."
    )
    message: str = Field(description="What happened, in a sentence a seller can act on.")
    shop_name: str | None
    checked_at: datetime


class RemoteWebhookRead(BaseModel):
    topic: str = Field(description="The platform's own topic: orders/create, order.created.")
    remote_id: str | None = Field(description="The store's id for it; null when missing.")
    status: WebhookStatus


class WebhooksRead(BaseModel):
    webhooks: list[RemoteWebhookRead]
