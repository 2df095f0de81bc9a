"""One store's API, whatever its platform: check the credentials, set up the order webhooks,
read their live state, remove them, list the orders. The credentials' kind picks the
platform.

    async with StoreApi(settings, domain, credentials, token=cached) as store:
        result = await store.check()
    if store.token != cached:
        ...  # keep store.token (a Shopify app's access token) for next time

Every method raises StoreProblem for anything the seller can act on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from astra.db.tables import CredentialsKind
from astra.settings import Settings
from astra.stores import shopify, woocommerce
from astra.stores.net import IPAddress, Resolver, StoreHttp, is_public_address, resolve_host
from astra.stores.problems import StoreProblem
from astra.stores.shopify import (
    AccessToken,
    BulkOperation,
    OrderCount,
    ShopifyAdmin,
    ShopInfo,
    TokenRejected,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
WebhookStatus = Literal["active", "disabled", "missing"]
# A cached token this close to its expiry is renewed before it is used.
TOKEN_RENEWAL_MARGIN = timedelta(minutes=5)
_MYSHOPIFY = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
SHOPIFY_RECENT_ONLY = (
    "Shopify shows Astra only the last 60 days of orders. Add the read_all_orders "
    "scope to the app to include older ones."
)


@dataclass(frozen=True, slots=True)
class ShopifyAppCredentials:
    """A Dev Dashboard app: Astra gets access tokens by the client credentials grant, and
    Shopify signs the app's webhooks with the client secret."""

    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ShopifyLegacyCredentials:
    """A custom app made in the store's admin before 2026: a permanent Admin API access
    token, and (to verify its webhooks) the app's API secret key."""

    access_token: str = field(repr=False)
    client_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class WooCommerceCredentials:
    """A WooCommerce REST API key."""

    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)


Credentials = ShopifyAppCredentials | ShopifyLegacyCredentials | WooCommerceCredentials


def stored_credentials(kind: str, fields: Mapping[str, str | None]) -> Credentials:
    """The credentials an integration holds: its `credentials_kind` and the fields of its
    (decrypted) `credentials` JSON."""
    if kind == CredentialsKind.shopify_app:
        return ShopifyAppCredentials(str(fields["client_id"]), str(fields["client_secret"]))
    if kind == CredentialsKind.shopify_token:
        return ShopifyLegacyCredentials(str(fields["access_token"]), fields.get("client_secret"))
    if kind == CredentialsKind.woocommerce_key:
        return WooCommerceCredentials(str(fields["consumer_key"]), str(fields["consumer_secret"]))
    raise ValueError(f"unknown credentials kind {kind!r}")


@dataclass(frozen=True, slots=True)
class CheckResult:
    shop_name: str | None
    # What the store granted (Shopify's access scopes; WooCommerce says nothing of its keys).
    scopes: tuple[str, ...] = ()
    # Sentences worth showing next to a working connection.
    notes: tuple[str, ...] = ()

    @property
    def recent_orders_only(self) -> bool:
        """Whether the store lists only its recent orders to Astra (Shopify's 60 days)."""
        return SHOPIFY_RECENT_ONLY in self.notes


@dataclass(frozen=True, slots=True)
class RemoteWebhook:
    topic: str  # the platform's own name: orders/create, order.created
    remote_id: str | None  # None when missing
    status: WebhookStatus


@dataclass(frozen=True, slots=True)
class OrderPage:
    # Each order in the shape the platform's order webhooks send it.
    orders: list[dict[str, Any]]
    # Hand back to `orders()` for the next page; None after the last one.
    next_cursor: str | None
    # How many orders the listing holds in all, when the store says (WooCommerce does).
    total: int | None = None


class StoreApi:
    """The API of the store at `domain`, for one operation or a few in a row."""

    def __init__(
        self,
        settings: Settings,
        domain: str,
        credentials: Credentials,
        *,
        token: AccessToken | None = None,
        resolver: Resolver = resolve_host,
        address_allowed: Callable[[IPAddress], bool] = is_public_address,
    ) -> None:
        self.domain = domain
        self.credentials = credentials
        # A Shopify app's current access token: the one given, or the one obtained here.
        self.token = token if isinstance(credentials, ShopifyAppCredentials) else None
        self._http = StoreHttp(settings, domain, resolver=resolver, address_allowed=address_allowed)
        self._renewed = False

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, traceback)

    @property
    def platform(self) -> Literal["shopify", "woocommerce"]:
        return "woocommerce" if isinstance(self.credentials, WooCommerceCredentials) else "shopify"

    async def check(self, *, with_name: bool = True) -> CheckResult:
        """Whether the credentials work on this store and may read its orders; with the
        WooCommerce site's title too unless `with_name` is false (a sync has no use for it,
        and the index is one request more)."""
        if isinstance(self.credentials, WooCommerceCredentials):
            woo = self._woo(self.credentials)
            name = await woo.site_name() if with_name else None
            await woo.check()
            return CheckResult(name)
        info = await self._shopify(lambda admin: admin.shop())
        self._ensure_usable(info)
        notes = []
        if shopify.ALL_ORDERS_SCOPE not in info.scopes:
            notes.append(SHOPIFY_RECENT_ONLY)
        if isinstance(self.credentials, ShopifyLegacyCredentials) and not (
            self.credentials.client_secret
        ):
            notes.append(
                "Add the app's API secret key too: Shopify signs the webhooks Astra sets up "
                "with it, so without it they can't be verified."
            )
        return CheckResult(info.name, info.scopes, tuple(notes))

    async def register_webhooks(self, address: str, secret: str) -> list[RemoteWebhook]:
        """Make the store deliver its order webhooks to `address`, once per topic: what is
        there already is kept (and a disabled WooCommerce webhook re-enabled), so calling
        this again creates nothing new.

        WooCommerce signs with `secret`. Shopify signs with the app's client secret (the
        credentials' `client_secret`), whatever `secret` says."""
        if isinstance(self.credentials, WooCommerceCredentials):
            hooks = await self._register_woo(self._woo(self.credentials), address, secret)
        else:
            hooks = await self._shopify(lambda admin: self._register_shopify(admin, address))
        log.info(
            "store webhooks registered",
            extra={"store_domain": self.domain, "platform": self.platform, "count": len(hooks)},
        )
        return hooks

    async def webhook_states(self, address: str) -> list[RemoteWebhook]:
        """Each order topic's webhook to `address` as the store has it now."""
        if isinstance(self.credentials, WooCommerceCredentials):
            hooks = await self._woo(self.credentials).webhooks()
            return [_woo_state(topic, hooks, address) for topic in woocommerce.ORDER_TOPICS]
        subs = await self._shopify(lambda admin: admin.subscriptions(address))
        return _shopify_states(subs)

    async def remove_webhooks(self, address: str) -> None:
        """Delete every webhook the store has to `address`."""
        if isinstance(self.credentials, WooCommerceCredentials):
            woo = self._woo(self.credentials)
            for hook in await woo.webhooks():
                if hook.delivery_url == address:
                    await woo.delete_webhook(hook.remote_id)
        else:
            await self._shopify(lambda admin: _unsubscribe_all(admin, address))
        log.info(
            "store webhooks removed", extra={"store_domain": self.domain, "platform": self.platform}
        )

    async def orders(
        self, *, updated_since: datetime | None = None, cursor: str | None = None
    ) -> OrderPage:
        """A page of the store's orders updated since `updated_since` (all of them when
        None), oldest update first; pass `next_cursor` back for the next page (the cursor
        carries the listing on: `updated_since` then changes nothing). Orders changing
        while the listing is walked make it skip none; a changed one comes again, in its
        new version."""
        if isinstance(self.credentials, WooCommerceCredentials):
            orders, next_cursor, total = await self._woo(self.credentials).orders_walk(
                modified_after=updated_since, cursor=cursor
            )
            return OrderPage(orders, next_cursor, total)
        orders, after = await self._shopify(
            lambda admin: admin.orders_page(updated_since=updated_since, after=cursor)
        )
        return OrderPage(orders, after)

    async def order_count(self, *, updated_since: datetime | None = None) -> OrderCount | None:
        """How many orders `orders()` lists from `updated_since`, when the platform says
        before listing (Shopify; WooCommerce says it with the first page)."""
        if isinstance(self.credentials, WooCommerceCredentials):
            return None
        return await self._shopify(lambda admin: admin.orders_count(updated_since=updated_since))

    async def start_bulk_orders(self, *, updated_since: datetime | None = None) -> BulkOperation:
        """Start a Shopify bulk query of the orders `orders()` lists from `updated_since`."""
        return await self._shopify(
            lambda admin: admin.start_bulk_orders(updated_since=updated_since)
        )

    async def bulk_operation(self, operation_id: str) -> BulkOperation:
        return await self._shopify(lambda admin: admin.bulk_operation(operation_id))

    def bulk_failure(self, operation: BulkOperation) -> StoreProblem:
        return self._admin_without_token().bulk_failure(operation)

    def bulk_orders(self, url: str, *, skip: int = 0) -> AsyncGenerator[dict[str, Any]]:
        """The orders of a finished bulk query, from its result file (no token needed:
        the link is signed), after the first `skip`."""
        return self._admin_without_token().bulk_orders(url, skip=skip)

    def _admin_without_token(self) -> ShopifyAdmin:
        return ShopifyAdmin(self._http, AccessToken("", None))

    # --- Shopify ----------------------------------------------------------------------

    async def _shopify(self, operation: Callable[[ShopifyAdmin], Awaitable[T]]) -> T:
        """Run `operation` with a valid token; an app's token is renewed before it runs
        out, and once more if Shopify rejects it anyway (expired early, revoked)."""
        credentials = self.credentials
        if isinstance(credentials, ShopifyLegacyCredentials):
            return await operation(
                ShopifyAdmin(self._http, AccessToken(credentials.access_token, None))
            )
        assert isinstance(credentials, ShopifyAppCredentials)
        if self.token is None or self.token.expires_within(TOKEN_RENEWAL_MARGIN):
            await self._renew(credentials)
        assert self.token is not None
        try:
            return await operation(ShopifyAdmin(self._http, self.token))
        except TokenRejected:
            if self._renewed:
                raise self._app_token_rejected() from None
            await self._renew(credentials)
        try:
            return await operation(ShopifyAdmin(self._http, self.token))
        except TokenRejected:
            raise self._app_token_rejected() from None

    async def _renew(self, credentials: ShopifyAppCredentials) -> None:
        self.token = await shopify.request_token(
            self._http, credentials.client_id, credentials.client_secret
        )
        self._renewed = True

    def _app_token_rejected(self) -> StoreProblem:
        return StoreProblem(
            "invalid_credentials",
            f"Shopify rejected the access token it gave the app for {self.domain}. Check that "
            "the app is still installed on the store, then try again.",
        )

    def _ensure_usable(self, info: ShopInfo) -> None:
        if info.myshopify_domain.lower() != self.domain:
            elsewhere = info.myshopify_domain.lower()
            named = f" {elsewhere}," if _MYSHOPIFY.fullmatch(elsewhere) else " another store,"
            raise StoreProblem(
                "wrong_store",
                f"These credentials belong to{named} not {self.domain}. Enter that store's "
                f"address, or credentials for {self.domain}.",
            )
        if not info.reads_orders:
            raise shopify.missing_read_orders()

    async def _register_shopify(self, admin: ShopifyAdmin, address: str) -> list[RemoteWebhook]:
        # Checked first: webhooks must not be set up on a store the seller didn't mean.
        self._ensure_usable(await admin.shop())
        have = {sub.topic: sub for sub in await admin.subscriptions(address)}
        for topic in shopify.ORDER_TOPICS:
            if topic not in have:
                created = await admin.subscribe(topic, address)
                if created is None:  # made meanwhile by another call
                    have = {sub.topic: sub for sub in await admin.subscriptions(address)}
                else:
                    have[topic] = created
        return _shopify_states(list(have.values()))

    # --- WooCommerce ------------------------------------------------------------------

    def _woo(self, credentials: WooCommerceCredentials) -> woocommerce.WooCommerceApi:
        return woocommerce.WooCommerceApi(
            self._http, credentials.consumer_key, credentials.consumer_secret
        )

    @staticmethod
    async def _register_woo(
        woo: woocommerce.WooCommerceApi, address: str, secret: str
    ) -> list[RemoteWebhook]:
        existing = await woo.webhooks()
        result = []
        for topic in woocommerce.ORDER_TOPICS:
            match = _woo_match(topic, existing, address)
            if match is None:
                hook = await woo.create_webhook(topic, address, secret)
            else:
                # Sent again even when active: the secret may have been rotated since.
                hook = await woo.update_webhook(
                    match.remote_id, {"status": "active", "secret": secret}
                )
            result.append(RemoteWebhook(topic, str(hook.remote_id), _woo_status(hook.status)))
        return result


def _shopify_states(subs: list[shopify.Subscription]) -> list[RemoteWebhook]:
    by_topic = {sub.topic: sub for sub in subs}
    return [
        RemoteWebhook(topic, by_topic[topic].remote_id, "active")
        if topic in by_topic
        else RemoteWebhook(topic, None, "missing")
        for topic in shopify.ORDER_TOPICS
    ]


async def _unsubscribe_all(admin: ShopifyAdmin, address: str) -> None:
    for sub in await admin.subscriptions(address):
        await admin.unsubscribe(sub.remote_id)


def _woo_match(
    topic: str, hooks: list[woocommerce.Webhook], address: str
) -> woocommerce.Webhook | None:
    """The webhook for `topic` at `address`, an active one first if there are several."""
    matches = [hook for hook in hooks if hook.topic == topic and hook.delivery_url == address]
    matches.sort(key=lambda hook: hook.status != "active")
    return matches[0] if matches else None


def _woo_status(status: str) -> WebhookStatus:
    # WooCommerce's "paused" (by hand) and "disabled" (after failures) both deliver nothing.
    return "active" if status == "active" else "disabled"


def _woo_state(topic: str, hooks: list[woocommerce.Webhook], address: str) -> RemoteWebhook:
    match = _woo_match(topic, hooks, address)
    if match is None:
        return RemoteWebhook(topic, None, "missing")
    return RemoteWebhook(topic, str(match.remote_id), _woo_status(match.status))
