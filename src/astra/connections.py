"""An integration's connection to its store's own API: check the credentials, set the order
webhooks up, read their live state at the store, remove them.

Access is decided as for every other integration use case (`astra.access`). No database
connection is held while the store answers: what the call needs is read, the transaction
ends, the store is called (seconds, at worst a timeout), and the outcome is written in a
new transaction acting as the caller again. Every secret is decrypted only here, and only
for the call; nothing the store sends back is shown but through `StoreProblem` sentences.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert

from astra.access import ensure_visible
from astra.auth.principal import Principal
from astra.crypto import decrypt, decrypt_optional, encrypt
from astra.db.session import Database, Transaction, act_as, begin
from astra.db.tables import Role, WebhookStatus, integrations, store_webhooks
from astra.errors import AstraError
from astra.settings import Settings
from astra.stores.api import (
    Credentials,
    RemoteWebhook,
    ShopifyLegacyCredentials,
    StoreApi,
    stored_credentials,
)
from astra.stores.net import Resolver, resolve_host
from astra.stores.problems import StoreProblem
from astra.stores.shopify import AccessToken

log = logging.getLogger(__name__)

NO_CREDENTIALS = (
    "Add the store's API credentials (Edit > Connect the store's API) so Astra can check "
    "the connection and set the webhooks up."
)
NO_SIGNING_KEY = (
    "Add the app's API secret key as well: Shopify signs the webhooks Astra sets up with it, "
    "and without it Astra could not tell them from forgeries."
)
PROVEN_ELSEWHERE = (
    "The credentials work, but another Astra account already connected this store with its "
    "own API credentials, so this connection is not the store's."
)

_STATUS_ORDER = (WebhookStatus.missing, WebhookStatus.disabled, WebhookStatus.active)
_PROVE = text("SELECT public.app_prove_store(:id)")
_CONNECTION = select(
    integrations.c.domain,
    integrations.c.credentials_kind,
    integrations.c.credentials,
    integrations.c.access_token,
    integrations.c.access_token_expires_at,
    integrations.c.webhook_secret,
).where(integrations.c.id == bindparam("id"))
_REGISTERED = select(store_webhooks.c.topic, store_webhooks.c.address).where(
    store_webhooks.c.integration_id == bindparam("id")
)


class WebhookSetupFailed(AstraError):
    """The store refused or could not be reached: `problem` is the check's vocabulary."""

    status_code = 409

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.extra = {"problem": problem}


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    ok: bool
    problem: str | None
    message: str
    shop_name: str | None
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class _Connection:
    domain: str
    credentials: Credentials | None
    token: AccessToken | None
    webhook_secret: str


async def check_connection(
    db: Transaction,
    principal: Principal,
    integration_id: uuid.UUID,
    *,
    settings: Settings,
    resolver: Resolver,
) -> ConnectionCheck:
    """Whether the stored credentials work on this very store and may read its orders;
    the outcome is kept on the integration (the card shows it), and a working check
    proves the caller's claim of the store."""
    connection = await _load(db, principal, integration_id, settings.encryption_key)
    checked_at = datetime.now(UTC)
    if connection.credentials is None:
        result = ConnectionCheck(False, "no_credentials", NO_CREDENTIALS, None, checked_at)
        await _save_check(db, integration_id, result, proven=False)
        return result
    await db.end(commit=True)
    store = _store(settings, connection, resolver)
    try:
        async with store:
            found = await store.check()
        greeting = f"Connected to {found.shop_name}." if found.shop_name else "Connected."
        message = " ".join((greeting, *found.notes))
        result = ConnectionCheck(True, None, message, found.shop_name, checked_at)
    except StoreProblem as exc:
        result = ConnectionCheck(False, exc.problem, exc.message, None, checked_at)
    await act_as(db, principal.id)
    await _save_token(db, integration_id, connection.token, store.token, settings)
    proven = result.ok and (await db.execute(_PROVE, {"id": integration_id})).scalar_one()
    if result.ok and not proven:
        result = ConnectionCheck(True, None, PROVEN_ELSEWHERE, result.shop_name, checked_at)
    await _save_check(db, integration_id, result, proven=proven)
    return result


async def set_up_webhooks(
    db: Transaction,
    principal: Principal,
    integration_id: uuid.UUID,
    *,
    address: str,
    settings: Settings,
    resolver: Resolver,
) -> list[RemoteWebhook]:
    """Register the order webhooks at the store, idempotently (what is there is kept, a
    disabled one re-enabled), delivering to `address`; 409 with the problem otherwise."""
    connection = await _load(db, principal, integration_id, settings.encryption_key)
    credentials = _require(connection.credentials)
    if isinstance(credentials, ShopifyLegacyCredentials) and not credentials.client_secret:
        raise WebhookSetupFailed("no_credentials", NO_SIGNING_KEY)

    async def register(store: StoreApi) -> list[RemoteWebhook]:
        return await store.register_webhooks(address, connection.webhook_secret)

    return await _at_store(
        db, principal, integration_id, connection, register, address, settings, resolver
    )


async def read_webhooks(
    db: Transaction,
    principal: Principal,
    integration_id: uuid.UUID,
    *,
    address: str,
    settings: Settings,
    resolver: Resolver,
) -> list[RemoteWebhook]:
    """Each order topic's webhook as the store has it now: active, disabled or missing
    (Shopify removes a subscription that keeps failing; WooCommerce disables it)."""
    connection = await _load(db, principal, integration_id, settings.encryption_key)
    _require(connection.credentials)

    async def read(store: StoreApi) -> list[RemoteWebhook]:
        return await store.webhook_states(address)

    return await _at_store(
        db, principal, integration_id, connection, read, address, settings, resolver
    )


async def _at_store(
    db: Transaction,
    principal: Principal,
    integration_id: uuid.UUID,
    connection: _Connection,
    call: Callable[[StoreApi], Awaitable[list[RemoteWebhook]]],
    address: str,
    settings: Settings,
    resolver: Resolver,
) -> list[RemoteWebhook]:
    """Ask the store about its webhooks with no database connection held, then keep, as
    the caller again, the token it may have renewed and what it said of each topic."""
    await db.end(commit=True)
    try:
        async with _store(settings, connection, resolver) as store:
            hooks = await call(store)
    except StoreProblem as exc:
        raise WebhookSetupFailed(exc.problem, exc.message) from None
    await act_as(db, principal.id)
    await _save_token(db, integration_id, connection.token, store.token, settings)
    await _save_webhooks(db, integration_id, hooks, address)
    return hooks


async def remove_webhooks_quietly(
    db: Transaction,
    principal: Principal,
    integration_id: uuid.UUID,
    *,
    settings: Settings,
    resolver: Resolver,
) -> None:
    """Before a delete: remove the webhooks Astra registered at the store, best effort. A
    store that cannot be reached, or refuses, never blocks the delete."""
    connection = await _load(db, principal, integration_id, settings.encryption_key)
    addresses = {row.address for row in await db.execute(_REGISTERED, {"id": integration_id})}
    if connection.credentials is None or not addresses:
        return
    await db.end(commit=True)
    try:
        async with _store(settings, connection, resolver) as store:
            for address in addresses:
                await store.remove_webhooks(address)
    except StoreProblem:
        pass  # the delete goes ahead; StoreApi has logged what happened, without secrets
    await act_as(db, principal.id)


async def _load(
    db: Transaction, principal: Principal, integration_id: uuid.UUID, key: bytes
) -> _Connection:
    await ensure_visible(db, principal, integration_id)
    row = (await db.execute(_CONNECTION, {"id": integration_id})).one()
    token = None
    if row.access_token is not None:
        token = AccessToken(decrypt(key, row.access_token), row.access_token_expires_at)
    return _Connection(
        domain=row.domain,
        credentials=_credentials(row.credentials_kind, decrypt_optional(key, row.credentials)),
        token=token,
        webhook_secret=decrypt(key, row.webhook_secret),
    )


def _credentials(kind: str | None, sealed_json: str | None) -> Credentials | None:
    if kind is None or sealed_json is None:
        return None
    return stored_credentials(kind, json.loads(sealed_json))


def _require(credentials: Credentials | None) -> Credentials:
    if credentials is None:
        raise WebhookSetupFailed("no_credentials", NO_CREDENTIALS)
    return credentials


def _store(settings: Settings, connection: _Connection, resolver: Resolver) -> StoreApi:
    assert connection.credentials is not None
    return StoreApi(
        settings,
        connection.domain,
        connection.credentials,
        token=connection.token,
        resolver=resolver,
    )


async def _save_token(
    db: Transaction,
    integration_id: uuid.UUID,
    before: AccessToken | None,
    after: AccessToken | None,
    settings: Settings,
) -> None:
    """Keep the access token a Shopify app's credentials were exchanged for, encrypted."""
    if after is None or after == before:
        return
    await db.execute(
        update(integrations)
        .where(integrations.c.id == integration_id)
        .values(
            access_token=encrypt(settings.encryption_key, after.value),
            # A token without an expiry is a legacy one, never cached; keep the pair whole.
            access_token_expires_at=after.expires_at or datetime.now(UTC),
        )
    )


async def _save_check(
    db: Transaction, integration_id: uuid.UUID, result: ConnectionCheck, *, proven: bool
) -> None:
    values: dict[str, Any] = {
        "checked_at": result.checked_at,
        "check_problem": result.problem,
        "check_message": result.message[:500],
        "shop_name": result.shop_name[:300] if result.shop_name else None,
    }
    if not result.ok:
        values["proven_at"] = None
    await db.execute(
        update(integrations).where(integrations.c.id == integration_id).values(**values)
    )


async def _save_webhooks(
    db: Transaction,
    integration_id: uuid.UUID,
    hooks: list[RemoteWebhook],
    address: str,
) -> None:
    """Remember what the store has, per topic, and the worst status for the card."""
    owner = (
        await db.execute(select(integrations.c.user_id).where(integrations.c.id == integration_id))
    ).scalar_one()
    await db.execute(
        delete(store_webhooks).where(store_webhooks.c.integration_id == integration_id)
    )
    rows = [
        {
            "integration_id": integration_id,
            "user_id": owner,
            "topic": hook.topic,
            "remote_id": hook.remote_id or "-",
            "status": hook.status,
            "address": address,
        }
        for hook in hooks
    ]
    if rows:
        await db.execute(insert(store_webhooks), rows)
    worst = min(
        (WebhookStatus(hook.status) for hook in hooks), key=_STATUS_ORDER.index, default=None
    )
    await db.execute(
        update(integrations)
        .where(integrations.c.id == integration_id)
        .values(webhooks_status=worst.value if worst else None)
    )


async def keep_webhooks_healthy(
    database: Database,
    settings: Settings,
    integration_id: uuid.UUID,
    owner_id: uuid.UUID,
    *,
    resolver: Resolver = resolve_host,
) -> list[RemoteWebhook] | None:
    """The daily check, as the integration's owner: read the webhooks Astra registered at
    the store, and set them up again when one is missing (Shopify removed it) or disabled
    (WooCommerce switched it off), at the address they were registered with. The card
    shows what was found. None when there is nothing to check or the store cannot say."""
    owner = Principal(id=owner_id, email="", role=Role.seller)
    async with begin(database) as db:
        await act_as(db, owner_id)
        address = (await db.execute(_REGISTERED, {"id": integration_id})).first()
        if address is None:
            return None
        try:
            hooks = await read_webhooks(
                db, owner, integration_id, address=address.address, settings=settings,
                resolver=resolver,
            )  # fmt: skip
            if all(hook.status == WebhookStatus.active for hook in hooks):
                return hooks
            log.info("store webhooks set up again", extra={"integration_id": str(integration_id)})
            return await set_up_webhooks(
                db, owner, integration_id, address=address.address, settings=settings,
                resolver=resolver,
            )  # fmt: skip
        except WebhookSetupFailed as exc:
            log.warning(
                "store webhooks not checked",
                extra={"integration_id": str(integration_id), "problem": exc.extra["problem"]},
            )
            return None
