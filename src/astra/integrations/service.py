"""Integration use cases. Every read goes through `visible_integrations`, which scopes by
`astra.access`: admins see all rows, sellers their own; RLS enforces the same rule again."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from pydantic_core import PydanticCustomError
from sqlalchemy import (
    Executable,
    Select,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from astra.access import ensure_visible, refuse, viewer, visible_to
from astra.auth.principal import Principal
from astra.crypto import decrypt, encrypt, encrypt_optional
from astra.db.session import Result, Row, Transaction
from astra.db.tables import (
    CredentialsKind,
    Platform,
    integrations,
    orders,
    users,
    webhook_deliveries,
)
from astra.errors import Conflict, InvalidInput
from astra.integrations.schemas import (
    Credentials,
    DeliveryRead,
    IntegrationCreate,
    IntegrationUpdate,
    ShopifyTokenCredentials,
    check_credentials_platform,
)
from astra.pagination import Page, decode_cursor, split_page
from astra.stores.domains import InvalidDomain, validate_domain

DOMAIN_TAKEN = "This store is already connected."

# What a reader may see of an integration: never the secrets.
PUBLIC_COLUMNS = (
    integrations.c.id,
    integrations.c.user_id,
    integrations.c.name,
    integrations.c.type,
    integrations.c.domain,
    integrations.c.is_active,
    integrations.c.created_at,
    integrations.c.updated_at,
    # Which credentials are set, never what they are.
    # (A constant in the SQL, not a parameter: the statement stays one compiled text.)
    integrations.c.credentials_kind.is_not_distinct_from(
        literal_column(f"'{CredentialsKind.shopify_token.value}'")
    ).label("has_admin_access_token"),
    integrations.c.credentials_kind.is_not(None).label("has_credentials"),
    # The connection to the store's API, as last checked (the card's health line).
    integrations.c.checked_at,
    integrations.c.check_problem,
    integrations.c.check_message,
    integrations.c.shop_name,
    integrations.c.webhooks_status,
    integrations.c.proven_at.is_not(None).label("proven"),
    integrations.c.superseded_at.is_not(None).label("superseded"),
)
_ORDER_STATS = (
    select(
        func.count().label("order_count"),
        func.max(orders.c.received_at).label("last_order_at"),
    )
    .where(orders.c.integration_id == integrations.c.id, orders.c.deleted_at.is_(None))
    .lateral("order_stats")
)
_VISIBLE = (
    select(
        *PUBLIC_COLUMNS,
        users.c.email.label("owner_email"),
        _ORDER_STATS.c.order_count,
        _ORDER_STATS.c.last_order_at,
    )
    .join(users, users.c.id == integrations.c.user_id)
    .join(_ORDER_STATS, true())
)


class IntegrationRow(NamedTuple):
    """An integration as readers see it: plain values, no ORM state, no secrets.

    A named tuple whose fields are the columns of `visible_integrations`, in order, so a
    result row becomes one without a per-field copy (the list's hottest loop).
    """

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    type: str
    domain: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
    has_admin_access_token: bool
    has_credentials: bool
    checked_at: datetime | None
    check_problem: str | None
    check_message: str | None
    shop_name: str | None
    webhooks_status: str | None
    proven: bool
    superseded: bool
    owner_email: str
    order_count: int = 0
    last_order_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SecretState:
    webhook_secret: str
    previous_secret_expires_at: datetime | None


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def visible_integrations(is_admin: bool) -> Select[Any]:
    """What a principal may see, each with its owner's email and its live orders' count
    and newest arrival (index-only per row)."""
    return _VISIBLE.where(*visible_to(integrations, is_admin=is_admin))


def _list_statement(is_admin: bool, after_cursor: bool) -> Select[Any]:
    query = visible_integrations(is_admin)
    if after_cursor:
        position = tuple_(integrations.c.created_at, integrations.c.id)
        query = query.where(position < tuple_(bindparam("after_at"), bindparam("after_id")))
    return query.order_by(integrations.c.created_at.desc(), integrations.c.id.desc()).limit(
        bindparam("limit")
    )


# Built once: SQLAlchemy keys its compiled-statement cache on a statement's structure, and
# computing that key for a new statement object on every request is costly on the hottest
# read (BENCHMARKS.md). Values travel as bound parameters.
LIST_PAGE = {
    (is_admin, after): _list_statement(is_admin, after)
    for is_admin in (False, True)
    for after in (False, True)
}
_GET = {
    is_admin: visible_integrations(is_admin).where(integrations.c.id == bindparam("id"))
    for is_admin in (False, True)
}

_LOCK_SECRET = (
    select(integrations.c.webhook_secret, integrations.c.previous_secret_expires_at)
    .where(integrations.c.id == bindparam("id"))
    .with_for_update()
)

# The columns come from the parameters at execution time.
INSERT_INTEGRATION = insert(integrations).returning(*PUBLIC_COLUMNS)


async def list_integrations(
    db: Transaction, principal: Principal, *, limit: int, cursor: str | None
) -> Page[IntegrationRow]:
    params = viewer(principal) | {"limit": limit + 1}
    if cursor is not None:
        params["after_at"], params["after_id"] = decode_cursor(cursor)
    result = await db.execute(LIST_PAGE[principal.is_admin, cursor is not None], params)
    rows = [IntegrationRow._make(row) for row in result]
    return split_page(rows, limit, lambda row: (row.created_at, row.id))


async def get_integration(
    db: Transaction, principal: Principal, integration_id: uuid.UUID
) -> IntegrationRow:
    params = viewer(principal) | {"id": integration_id}
    row = (await db.execute(_GET[principal.is_admin], params)).one_or_none()
    if row is None:
        await refuse(db, integration_id)
    return IntegrationRow._make(row)


async def create_integration(
    db: Transaction, principal: Principal, data: IntegrationCreate, *, encryption_key: bytes
) -> tuple[IntegrationRow, str]:
    secret = new_webhook_secret()
    values = {
        "user_id": principal.id,
        "name": data.name,
        "type": data.type,
        "domain": data.domain,
        "webhook_secret": encrypt(encryption_key, secret),
        **credential_columns(data.given_credentials(), encryption_key),
    }
    row = (await _execute_unique(db, INSERT_INTEGRATION, values)).one()
    return IntegrationRow(**row._mapping, owner_email=principal.email), secret


async def update_integration(
    db: Transaction,
    principal: Principal,
    integration_id: uuid.UUID,
    data: IntegrationUpdate,
    *,
    encryption_key: bytes,
) -> IntegrationRow:
    current = await get_integration(db, principal, integration_id)
    changes = data.model_dump(exclude_unset=True, exclude={"admin_access_token", "credentials"})
    platform = Platform(changes.get("type", current.type))
    if "admin_access_token" in data.model_fields_set or "credentials" in data.model_fields_set:
        given = _updated_credentials(data)
        _check_platform(given, platform)
        changes |= credential_columns(given, encryption_key)
    elif "type" in changes and current.has_credentials and platform != current.type:
        raise InvalidInput(
            "The stored credentials are for the other platform: replace or remove them "
            "(credentials: null) when changing the platform.",
            field="credentials",
        )
    if "type" in changes or "domain" in changes:
        platform = changes.get("type", current.type)
        try:
            changes["domain"] = validate_domain(platform, changes.get("domain", current.domain))
        except InvalidDomain as exc:
            raise InvalidInput(str(exc), field="domain") from None
    if not changes:
        return current
    statement = (
        update(integrations)
        .where(integrations.c.id == integration_id)
        .values(**changes)
        .returning(*PUBLIC_COLUMNS)
    )
    row = (await _execute_unique(db, statement)).one()
    return current._replace(**row._mapping)


async def set_webhook_secret(
    db: Transaction,
    principal: Principal,
    integration_id: uuid.UUID,
    *,
    secret: str | None,
    grace: timedelta,
    encryption_key: bytes,
) -> SecretState:
    """Replace the webhook secret with `secret`, or a new random one when None.

    The replaced secret keeps verifying for `grace` (the store may still sign with it for
    a while), measured on the database clock that the webhook lookup also uses. Only one
    previous secret is kept: rotating again within the grace period drops the older one.
    Setting the secret it already has changes nothing. Secrets are stored encrypted, so
    the comparison is made here, on the row locked against a concurrent rotation.
    """
    await ensure_visible(db, principal, integration_id)
    current = (await db.execute(_LOCK_SECRET, {"id": integration_id})).one()
    new_secret = secret if secret is not None else new_webhook_secret()
    if decrypt(encryption_key, current.webhook_secret) == new_secret:
        return SecretState(new_secret, current.previous_secret_expires_at)
    keep_previous = grace > timedelta(0)
    expires_at = (
        await db.execute(
            update(integrations)
            .where(integrations.c.id == integration_id)
            .values(
                previous_webhook_secret=current.webhook_secret if keep_previous else None,
                previous_secret_expires_at=func.now() + grace if keep_previous else None,
                webhook_secret=encrypt(encryption_key, new_secret),
            )
            .returning(integrations.c.previous_secret_expires_at)
        )
    ).scalar_one()
    return SecretState(new_secret, expires_at)


async def delete_integration(
    db: Transaction, principal: Principal, integration_id: uuid.UUID
) -> None:
    await ensure_visible(db, principal, integration_id)
    await db.execute(delete(integrations).where(integrations.c.id == integration_id))


async def _execute_unique(
    db: Transaction, statement: Executable, values: dict[str, Any] | None = None
) -> Result:
    """Execute, turning the domain's unique violation into a 409.

    The unique constraint is the only duplicate check: a SELECT before the INSERT would
    race with a concurrent create of the same store.
    """
    try:
        return await db.execute(statement, values)
    except IntegrityError as exc:
        constraint = getattr(exc.orig.__cause__, "constraint_name", None) if exc.orig else None
        if constraint == "integrations_user_domain_key":
            raise Conflict(DOMAIN_TAKEN) from None
        raise


# The delivery log as sellers read it: the columns DeliveryRead shows, newest first.
DELIVERY_LOG = (
    select(*(webhook_deliveries.c[name] for name in DeliveryRead.model_fields))
    .where(webhook_deliveries.c.integration_id == bindparam("id"))
    .order_by(webhook_deliveries.c.received_at.desc())
    .limit(bindparam("limit"))
)


async def list_deliveries(
    db: Transaction, principal: Principal, integration_id: uuid.UUID, *, limit: int
) -> list[Row]:
    """The newest webhook deliveries of one integration the principal may see (403/404
    otherwise): the seller's view of what the receiver recorded."""
    await ensure_visible(db, principal, integration_id)
    return list(await db.execute(DELIVERY_LOG, {"id": integration_id, "limit": limit}))


def credential_columns(credentials: Credentials | None, encryption_key: bytes) -> dict[str, Any]:
    """The columns that hold `credentials` (None: none stored), encrypted. New credentials
    also forget the access token and the check the old ones earned."""
    client_secret = getattr(credentials, "client_secret", None)
    return {
        "credentials_kind": credentials.kind.value if credentials else None,
        "credentials": encrypt(encryption_key, credentials.model_dump_json())
        if credentials
        else None,
        "app_client_secret": encrypt_optional(encryption_key, client_secret),
        "access_token": None,
        "access_token_expires_at": None,
        "checked_at": None,
        "check_problem": None,
        "check_message": None,
        "shop_name": None,
        "proven_at": None,
    }


def _updated_credentials(data: IntegrationUpdate) -> Credentials | None:
    if data.admin_access_token is not None:
        if data.credentials is not None:
            raise InvalidInput(
                "Give either credentials or admin_access_token, not both.", field="credentials"
            )
        return ShopifyTokenCredentials(access_token=data.admin_access_token)
    return data.credentials


def _check_platform(credentials: Credentials | None, platform: Platform) -> None:
    try:
        check_credentials_platform(credentials, platform)
    except PydanticCustomError as exc:
        raise InvalidInput(str(exc), field="credentials") from None
