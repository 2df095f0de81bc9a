"""The schema, defined once: every table as SQLAlchemy Core, and the vocabularies their
columns hold.

The migrations build the database; this module is what the code reads and writes through,
and `tests/db/test_schema.py` compares the two with Alembic's own autogenerate comparison,
so a change made in one place only fails CI. CHECK constraints and the RLS policies live
in the migrations alone: Alembic does not compare them, and the code never builds on them.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# The job queue's tables (procrastinate's own schema, migration 0007) are procrastinate's to
# define and to read: the code reaches them only through procrastinate.
QUEUE_PREFIX = "procrastinate_"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's filter of what this module describes: everything but the job queue's tables
    and Alembic's own version table. Used by migrations/env.py and the schema test."""
    if type_ != "table" or name is None:
        return True
    return not (name.startswith(QUEUE_PREFIX) or name == "alembic_version")


class Role(StrEnum):
    admin = "admin"
    seller = "seller"


class Platform(StrEnum):
    """The store's platform: `integrations.type` (the brief's name) and `orders.platform`."""

    shopify = "shopify"
    woocommerce = "woocommerce"


class CredentialsKind(StrEnum):
    shopify_app = "shopify_app"  # a Dev Dashboard app: client id and secret
    shopify_token = "shopify_token"  # noqa: S105 (a legacy custom app: its Admin API access token)
    woocommerce_key = "woocommerce_key"  # a REST API key: consumer key and secret


class WebhookStatus(StrEnum):
    """A registered webhook as the store shows it now."""

    active = "active"
    disabled = "disabled"  # WooCommerce switched it off after failed deliveries
    missing = "missing"  # gone from the store (Shopify removes failing ones)


class DeliveryOutcome(StrEnum):
    """What an accepted delivery did; every one of them is recorded."""

    stored = "stored"  # the order was created or brought up to date
    stale = "stale"  # an older version than the one stored: kept the newer
    deleted = "deleted"  # the store deleted the order: marked deleted
    ignored = "ignored"  # not an order change this module keeps (another topic)
    held = "held"  # arrived while the integration was paused: the order was still stored
    refused = "refused"  # signed, but not acted on: `reason` says why


class OrderOrigin(StrEnum):
    """How Astra first learned of an order (`orders.origin`)."""

    webhook = "webhook"  # the store delivered it
    sync = "sync"  # a sync found it listing the store's orders


class SyncStatus(StrEnum):
    """Where an integration's sync stands (`syncs.state`; no row yet: `never`)."""

    never = "never"
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


def _id() -> Column[object]:
    return Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()"))


def _now(name: str) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=False, server_default=text("now()"))


def _owned_through_integration(name: str) -> ForeignKeyConstraint:
    """(integration_id, user_id) -> integrations (id, user_id): a child row's denormalised
    owner, which its RLS policy reads, is always its integration's owner."""
    return ForeignKeyConstraint(
        ["integration_id", "user_id"],
        ["integrations.id", "integrations.user_id"],
        name=name,
        ondelete="CASCADE",
        onupdate="CASCADE",
    )


users = Table(
    "users",
    metadata,
    _id(),
    Column("email", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("role", Text, nullable=False, server_default=Role.seller.value),
    _now("created_at"),
    UniqueConstraint("email", name="users_email_key"),
)

# A signed-in browser or client. Only the SHA-256 of the token is stored.
sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    _now("created_at"),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("sessions_user_id_idx", "user_id"),
)

integrations = Table(
    "integrations",
    metadata,
    _id(),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    # The platform (a Platform value); the brief calls it `type`.
    Column("type", Text, nullable=False),
    Column("domain", Text, nullable=False),
    # Every secret below is a Fernet token (astra.crypto), never returned by the API.
    Column("webhook_secret", Text, nullable=False),
    # After a rotation the old secret keeps verifying until previous_secret_expires_at.
    Column("previous_webhook_secret", Text),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    _now("created_at"),
    _now("updated_at"),
    # The store's API: which credentials are stored (a CredentialsKind), and they (JSON).
    Column("credentials_kind", Text),
    Column("credentials", Text),
    # The Shopify app's client secret: it signs the webhooks registered through the API.
    Column("app_client_secret", Text),
    # The access token the client credentials grant last gave, until it expires.
    Column("access_token", Text),
    Column("access_token_expires_at", DateTime(timezone=True)),
    # The last connection check: when, its problem (None: it worked), and what it found.
    Column("checked_at", DateTime(timezone=True)),
    Column("check_problem", Text),
    Column("check_message", Text),
    Column("shop_name", Text),
    # The registered webhooks as last seen at the store: the worst one's WebhookStatus.
    Column("webhooks_status", Text),
    # When working credentials for exactly this store last proved the seller holds it;
    # at most one claim of a store is proven. Another seller's proof supersedes a claim.
    Column("proven_at", DateTime(timezone=True)),
    Column("superseded_at", DateTime(timezone=True)),
    # A seller connects a store once; sellers' claims of one store are apart until proven.
    UniqueConstraint("user_id", "domain", name="integrations_user_domain_key"),
    UniqueConstraint("id", "user_id", name="integrations_id_user_key"),
)
# Keyset pagination, newest first: admins over everything, sellers over their own.
Index("integrations_created_idx", integrations.c.created_at.desc(), integrations.c.id.desc())
Index(
    "integrations_proven_domain_key",
    integrations.c.domain,
    unique=True,
    postgresql_where=integrations.c.proven_at.is_not(None),
)
Index(
    "integrations_user_created_idx",
    integrations.c.user_id,
    integrations.c.created_at.desc(),
    integrations.c.id.desc(),
)

# The latest known version of one order of one integration's store.
orders = Table(
    "orders",
    metadata,
    _id(),
    Column("integration_id", Uuid, nullable=False),
    # The integration's owner, denormalised so the RLS policy needs no join.
    Column("user_id", Uuid, nullable=False),
    Column("platform", Text, nullable=False),
    Column("platform_order_id", Text, nullable=False),
    Column("order_number", Text),
    Column("total", Numeric(asdecimal=True)),
    Column("currency", Text),
    Column("financial_status", Text),
    Column("placed_at", DateTime(timezone=True)),
    # The platform's own updated_at: an older version never overwrites a newer one.
    Column("source_updated_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
    # Buyers' personal data, and large: read only where asked for by name.
    Column("raw", JSONB, nullable=False),
    _now("received_at"),
    _now("updated_at"),
    # An OrderOrigin; set when the order is first stored, never changed.
    Column("origin", Text, nullable=False, server_default=OrderOrigin.webhook.value),
    _owned_through_integration("orders_integration_fkey"),
    UniqueConstraint("integration_id", "platform_order_id", name="orders_integration_order_key"),
)
_live = orders.c.deleted_at.is_(None)
# Keyset pagination, newest first, over live orders: per integration (also the cards'
# order stats, index-only: it carries the user_id the RLS policy reads), per seller, all.
Index(
    "orders_integration_received_idx",
    orders.c.integration_id,
    orders.c.received_at.desc(),
    orders.c.id.desc(),
    postgresql_include=["user_id"],
    postgresql_where=_live,
)
Index(
    "orders_user_received_idx",
    orders.c.user_id,
    orders.c.received_at.desc(),
    orders.c.id.desc(),
    postgresql_where=_live,
)
Index(
    "orders_received_idx", orders.c.received_at.desc(), orders.c.id.desc(), postgresql_where=_live
)

# One row per accepted delivery: the idempotency record and the delivery log.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("integration_id", Uuid, nullable=False),
    # The platform's delivery id (for WooCommerce, with a digest of the body: see platforms).
    Column("delivery_id", Text, nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("topic", Text, nullable=False),
    Column("platform_order_id", Text),
    Column("outcome", Text, nullable=False),
    Column("body_bytes", Integer, nullable=False),
    _now("received_at"),
    # Why a delivery was refused, in a sentence for the seller; None otherwise.
    Column("reason", Text),
    PrimaryKeyConstraint("integration_id", "delivery_id", name="webhook_deliveries_pkey"),
    _owned_through_integration("webhook_deliveries_integration_fkey"),
)
Index(
    "webhook_deliveries_integration_received_idx",
    webhook_deliveries.c.integration_id,
    webhook_deliveries.c.received_at.desc(),
)
# Retention takes the oldest first, over every seller (app_prune_deliveries).
Index("webhook_deliveries_received_idx", webhook_deliveries.c.received_at)

# The order webhooks Astra registered at each store, as last seen there.
store_webhooks = Table(
    "store_webhooks",
    metadata,
    Column("integration_id", Uuid, nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("topic", Text, nullable=False),
    Column("remote_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("address", Text, nullable=False),
    _now("registered_at"),
    _now("checked_at"),
    PrimaryKeyConstraint("integration_id", "topic", name="store_webhooks_pkey"),
    _owned_through_integration("store_webhooks_integration_fkey"),
)

# Each integration's sync (astra.sync.state): the current or last run, where it resumes,
# and how far the store's orders are imported. No row: never synced.
syncs = Table(
    "syncs",
    metadata,
    Column("integration_id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("state", Text, nullable=False),  # a SyncStatus other than `never`
    # The run's progress: orders of its listing taken in, of how many the store said.
    Column("imported", Integer, nullable=False, server_default=text("0")),
    Column("total", Integer),
    # Over every run: changes the webhooks should have brought and a sync did.
    Column("missed_by_webhook", Integer, nullable=False, server_default=text("0")),
    # The run's listing: orders updated since (None: all of them), and the page it is at.
    Column("updated_since", DateTime(timezone=True)),
    Column("cursor", Text),
    # Every order updated before this was imported (the start of the last finished run).
    Column("synced_through", DateTime(timezone=True)),
    # The running run's claim, and its last sign of life: a claim older than the lease is
    # a dead process's, and another run may take over.
    Column("run_id", Uuid),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("requested_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("last_synced_at", DateTime(timezone=True)),
    # Why the last run failed, and what the store's listing leaves out, for the seller.
    Column("error", Text),
    Column("note", Text),
    _owned_through_integration("syncs_integration_fkey"),
)

# Failed (or still being checked) sign-in and set-up attempts: the limits every worker
# shares (astra.auth.limits). The account is SHA-256 of the lowercased email, never the
# email itself; only definer functions reach the table.
sign_in_attempts = Table(
    "sign_in_attempts",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("account_hash", LargeBinary),
    Column("address", Text, nullable=False),
    _now("attempted_at"),
    Index("sign_in_attempts_address_idx", "address", "attempted_at"),
    Index("sign_in_attempts_account_idx", "account_hash", "address", "attempted_at"),
    Index("sign_in_attempts_attempted_idx", "attempted_at"),
)
