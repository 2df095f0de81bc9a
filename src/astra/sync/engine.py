"""One sync of one integration: list the store's orders through its API, page by page, and
store them through the one order writer.

    state = await run_sync(database, settings, integration_id, progress=show)

The run acts as the integration's owner in every transaction, so row-level security holds
it to that seller's rows, as it holds the webhook path. The first sync lists every order
the store shows; later ones, those updated since the last finished one began (less
`state.OVERLAP`). Each page is committed together with the run's cursor and counters: a
run killed anywhere resumes after the last committed page, and writes no order twice
(the writer keeps one row per order and the newest version by the store's `updated_at`;
a delete stays marked: a sync never undeletes).

A Shopify listing of more than `ASTRA_SYNC_BULK_THRESHOLD` orders (`ordersCount`, asked
before a new listing starts) is fetched by a bulk operation instead: Shopify runs the query
by itself and hands over one JSONL file. The run saves the operation's id as its cursor at
once, so a run killed while Shopify works, or while the file downloads, resumes polling that
same operation and skips the orders already committed; the file's orders are written in
batches through the same writer, each batch committed with the count of orders done. An
operation that fails, is cancelled or expires fails the run with a sentence saying so and
drops the cursor: the next run starts a new one (Shopify's advice for its failures is to run
the query again; paging instead would take hours at such a store's size). An expired one
found before any of it was read is simply started again.

A store that is busy or briefly away (429, 5xx, Shopify's THROTTLED, a timeout, a dropped
connection) is called again: after the Retry-After it sent, or else after a doubling wait
with jitter, until `RetryPolicy.give_up_after` has passed; then the run fails with a
sentence saying so, and the next one resumes where it stopped. Anything else the store
answers (wrong credentials, a missing scope) fails the run at once, with the store
client's own sentence.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final, TypeVar

import orjson
from sqlalchemy import Row, bindparam, select, text, update

from astra.crypto import decrypt, encrypt
from astra.db.session import Database, Transaction, act_as, begin
from astra.db.tables import OrderOrigin, integrations
from astra.errors import NotFound
from astra.orders import writer
from astra.orders.writer import OrderVersion
from astra.settings import Settings
from astra.stores.api import SHOPIFY_RECENT_ONLY, StoreApi, stored_credentials
from astra.stores.net import DownloadRefused, IPAddress, Resolver, is_public_address, resolve_host
from astra.stores.problems import StoreProblem
from astra.stores.shopify import BULK_RUNNING, AccessToken, BulkOperation, BulkOperationFailed
from astra.sync import state
from astra.sync.state import BEAT, NO_CREDENTIALS, LostClaim, Run, SyncState
from astra.webhooks.platforms import PLATFORMS, MalformedDelivery, parse_payload

log = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[SyncState], Awaitable[None]]

# Both clients ask for 100 orders a page; a store sending far more is not followed.
MAX_PAGE_ORDERS = 250
INTERRUPTED = (
    "The import stopped before it finished; the next sync continues where this one stopped."
)
# A bulk operation's orders are committed this many at a time.
BULK_BATCH = 1000
# A run's cursor while it reads a bulk operation: this prefix, then JSON {"id", "done"}.
BULK_CURSOR = "shopify-bulk:"

# The owner, from the integration itself (a definer: before acting as anyone, the runtime
# role sees no integration), and the transaction acting as them, in one round trip.
_ACT_AS_OWNER = text(
    "SELECT t.user_id, public.app_act_as(t.user_id) FROM public.app_webhook_target(:id) AS t"
)
_TARGET = select(
    integrations.c.type,
    integrations.c.domain,
    integrations.c.created_at,
    integrations.c.credentials_kind,
    integrations.c.credentials,
    integrations.c.access_token,
    integrations.c.access_token_expires_at,
).where(integrations.c.id == bindparam("id"))
_SAVE_TOKEN = (
    update(integrations)
    .where(integrations.c.id == bindparam("integration"))
    .values(access_token=bindparam("token"), access_token_expires_at=bindparam("token_expires_at"))
)
_STORE_PAGE = writer.store_versions(origin=OrderOrigin.sync)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a run waits for a store that is busy or away, and when it stops waiting."""

    give_up_after: timedelta = timedelta(minutes=10)
    # Without a Retry-After: this long, doubling per try up to `max_wait`, half of it jitter.
    first_wait: float = 1.0
    max_wait: float = 60.0
    # A running bulk operation is asked about after this long, doubling up to the cap; a
    # run waits for it this long in all, then stops (the next run goes on waiting for it).
    first_poll: float = 1.0
    max_poll: float = 15.0
    bulk_patience: timedelta = timedelta(hours=6)

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_wait, self.first_wait * 2.0 ** (attempt - 1))
        # Jitter spreads the retries of many syncs a store turned away at once.
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - not a secret


DEFAULT_RETRY: Final = RetryPolicy()


def missed_by_webhook(written: Iterable[datetime | None], *, connected_at: datetime) -> int:
    """How many of the versions a sync wrote recovered a change the webhooks missed.

    `missed_by_webhook` counts the versions a sync wrote, that is new orders and versions
    newer (by the store's own `updated_at`) than the one stored, that the store made after
    the integration was connected (`connected_at`, its `created_at`): a webhook should
    have delivered each of them, and none had when the sync wrote it. Not counted: orders
    last changed before the connection (backfill, not misses), versions as new as the one
    stored (the overlap between two syncs, or a webhook that was there first) or older
    (not written), and versions without an `updated_at`. `written`: the `updated_at` of
    each version written.
    """
    # Stores give their times to the second, so a change within the second the integration
    # was connected may pass for one before it: a miss is claimed only when certain.
    return sum(1 for changed in written if changed is not None and changed > connected_at)


async def run_sync(
    database: Database,
    settings: Settings,
    integration_id: uuid.UUID,
    *,
    progress: Progress | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    resolver: Resolver = resolve_host,
    address_allowed: Callable[[IPAddress], bool] = is_public_address,
) -> SyncState:
    """Run (or resume) the integration's sync to its end, and return its state: done, or
    failed with the reason in `error`; running, untouched, when another run holds it.

    `progress` is awaited with the state after every committed page (or bulk batch, or
    started bulk operation). An exception from it, or a cancellation, stops the run
    (recorded as failed: the next run resumes after the last committed page) and is raised
    again. NotFound when the integration is gone. `resolver` and `address_allowed` decide
    where calls may go (`astra.stores.net`; tests point them at the simulated stores)."""
    async with begin(database) as db:
        owner = (await db.execute(_ACT_AS_OWNER, {"id": integration_id})).scalar_one_or_none()
        if owner is None:
            raise NotFound("No integration with this id.")
        target = (await db.execute(_TARGET, {"id": integration_id})).one()
        run = await state.claim(db, integration_id, owner)
        if run is None:
            return await state.read(db, integration_id)
    sync = _Sync(
        database, settings, owner, target, run, progress, retry, (resolver, address_allowed)
    )
    return await sync.run()


class _Sync:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        owner: uuid.UUID,
        target: Row[Any],
        run: Run,
        progress: Progress | None,
        retry: RetryPolicy,
        network: tuple[Resolver, Callable[[IPAddress], bool]],
    ) -> None:
        self._database = database
        self._settings = settings
        self._owner = owner
        self._target = target
        self._run = run
        self._progress = progress
        self._retry = retry
        self._rules = PLATFORMS[target.type]
        self._token = _cached_token(settings, target)
        self._note: str | None = None
        self._log = {"integration_id": str(run.integration_id)}
        self._network = network

    async def run(self) -> SyncState:
        log.info("sync started", extra=self._log | {"resumed": self._run.cursor is not None})
        try:
            finished = await self._import()
        except StoreProblem as problem:
            log.info("sync failed", extra=self._log | {"problem": problem.problem})
            return await self._failed(
                problem.message, restart=isinstance(problem, BulkOperationFailed)
            )
        except LostClaim:
            log.warning("sync lost its claim to another run", extra=self._log)
            async with self._acting() as db:
                return await state.read(db, self._run.integration_id)
        except BaseException:
            await self._stopped()
            raise
        log.info("sync finished", extra=self._log | {"imported": finished.imported})
        return finished

    async def _import(self) -> SyncState:
        target = self._target
        if target.credentials is None:
            raise StoreProblem("invalid_credentials", NO_CREDENTIALS)
        fields = orjson.loads(decrypt(self._settings.encryption_key, target.credentials))
        credentials = stored_credentials(target.credentials_kind, fields)
        resolver, allowed = self._network
        async with StoreApi(
            self._settings,
            target.domain,
            credentials,
            token=self._token,
            resolver=resolver,
            address_allowed=allowed,
        ) as store:
            checked = await self._call(partial(store.check, with_name=False))
            self._note = SHOPIFY_RECENT_ONLY if checked.recent_orders_only else None
            cursor = self._run.cursor
            total: int | None = None
            if cursor is not None and cursor.startswith(BULK_CURSOR):
                return await self._bulk(store, _BulkCursor.read(cursor), None)
            if cursor is None:
                count = await self._call(
                    partial(store.order_count, updated_since=self._run.updated_since)
                )
                if count is not None:
                    total = count.count if count.exact else None
                    if count.count > self._settings.sync_bulk_threshold:
                        return await self._bulk(store, None, total)
            while True:
                page = await self._call(
                    partial(store.orders, updated_since=self._run.updated_since, cursor=cursor)
                )
                if len(page.orders) > MAX_PAGE_ORDERS:
                    raise StoreProblem(
                        "store_unavailable",
                        f"{target.domain} sent {len(page.orders)} orders in one page, far more "
                        "than Astra asked for. Try again later.",
                    )
                saved = await self._save(
                    store,
                    page.orders,
                    page.next_cursor,
                    total if page.total is None else page.total,
                )
                if self._progress is not None:
                    await self._progress(saved)
                if page.next_cursor is None:
                    return saved
                cursor = page.next_cursor

    # --- a bulk operation (Shopify) -----------------------------------------------------

    async def _bulk(
        self, store: StoreApi, saved: _BulkCursor | None, total: int | None
    ) -> SyncState:
        """Start (or go on with) the listing's bulk operation, wait for it, import its
        file."""
        if saved is None:
            saved = await self._start_bulk(store, total)
        operation = await self._finished(store, saved.id)
        if operation.status == "EXPIRED" and saved.done == 0:
            # Its result is gone before any of it was read: start over, nothing to undo.
            saved = await self._start_bulk(store, total)
            operation = await self._finished(store, saved.id)
        if operation.status != "COMPLETED":
            raise store.bulk_failure(operation)
        return await self._download(store, operation, saved, total)

    async def _start_bulk(self, store: StoreApi, total: int | None) -> _BulkCursor:
        operation = await self._call(
            partial(store.start_bulk_orders, updated_since=self._run.updated_since)
        )
        log.info("sync bulk operation started", extra=self._log | {"bulk_id": operation.id})
        saved = _BulkCursor(operation.id, 0)
        started = await self._save(store, [], saved.text(), total)
        if self._progress is not None:
            await self._progress(started)
        return saved

    async def _finished(self, store: StoreApi, operation_id: str) -> BulkOperation:
        """The operation once it is over, polled (beating) while Shopify works on it."""
        loop = asyncio.get_running_loop()
        patience = self._retry.bulk_patience.total_seconds()
        deadline = loop.time() + patience
        wait = self._retry.first_poll
        while True:
            operation = await self._call(partial(store.bulk_operation, operation_id))
            if operation.status not in BULK_RUNNING:
                return operation
            if loop.time() + wait > deadline:
                raise StoreProblem(
                    "store_unavailable",
                    f"Shopify was still preparing the export of {self._target.domain}'s "
                    f"orders after {patience / 3600:g} hours; the next sync goes on "
                    "waiting for it.",
                )
            await self._pause(wait)
            wait = min(wait * 2, self._retry.max_poll)

    async def _download(
        self, store: StoreApi, operation: BulkOperation, saved: _BulkCursor, total: int | None
    ) -> SyncState:
        """Import the finished operation's file, in batches, each committed with how far
        into the file it is; a dropped download is picked up after the last batch."""
        if operation.url is None:  # nothing matched the query
            return await self._save(store, [], None, total)
        done = saved.done
        loop = asyncio.get_running_loop()
        patience = self._retry.give_up_after.total_seconds()
        deadline, attempt, done_before = loop.time() + patience, 0, done
        while True:
            try:
                async with aclosing(store.bulk_orders(operation.url, skip=done)) as orders:
                    batch: list[dict[str, Any]] = []
                    async for order in orders:
                        batch.append(order)
                        if len(batch) == BULK_BATCH:
                            done += len(batch)
                            cursor = _BulkCursor(operation.id, done).text()
                            saved_batch = await self._save(store, batch, cursor, total)
                            batch = []
                            if self._progress is not None:
                                await self._progress(saved_batch)
                    finished = await self._save(store, batch, None, total)
                    if self._progress is not None:
                        await self._progress(finished)
                    return finished
            except DownloadRefused:
                raise store.bulk_failure(
                    BulkOperation(operation.id, "EXPIRED", url=operation.url)
                ) from None
            except StoreProblem as problem:
                if not problem.transient:
                    raise
                if done > done_before:  # it got further since the last drop: patience anew
                    deadline, attempt, done_before = loop.time() + patience, 0, done
                attempt += 1
                wait = problem.retry_after or self._retry.backoff(attempt)
                if loop.time() + wait > deadline:
                    raise StoreProblem(problem.problem, self._gave_up(problem)) from None
                log.info(
                    "bulk download dropped, resuming",
                    extra=self._log | {"problem": problem.problem, "done": done},
                )
                await self._pause(wait)

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, again while the store is busy or away, within the retry policy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry.give_up_after.total_seconds()
        attempt = 0
        while True:
            try:
                return await call()
            except StoreProblem as problem:
                if not problem.transient:
                    raise
                attempt += 1
                wait = problem.retry_after
                if wait is None:
                    wait = self._retry.backoff(attempt)
                if loop.time() + wait > deadline:
                    raise StoreProblem(problem.problem, self._gave_up(problem)) from None
                log.info(
                    "store busy, waiting",
                    extra=self._log | {"problem": problem.problem, "wait_seconds": round(wait, 2)},
                )
                await self._pause(wait)

    def _gave_up(self, problem: StoreProblem) -> str:
        minutes = self._retry.give_up_after.total_seconds() / 60
        return (
            f"{problem.message} Astra kept trying for {minutes:g} minutes; the next sync "
            "continues where this one stopped."
        )

    async def _pause(self, seconds: float) -> None:
        """Wait, beating at least every BEAT, so the claim outlives the wait."""
        remaining = seconds
        while remaining > 0:
            step = min(remaining, BEAT.total_seconds())
            await asyncio.sleep(step)
            remaining -= step
            async with self._acting() as db:
                await state.beat(db, self._run)

    async def _save(
        self,
        store: StoreApi,
        listed: list[dict[str, Any]],
        next_cursor: str | None,
        total: int | None,
    ) -> SyncState:
        """Write one page's orders, and move the run past it, in one transaction."""
        versions = self._versions(listed)
        missed = 0
        async with self._acting() as db:
            if versions:
                missed = await self._write(db, versions)
            await self._keep_token(db, store)
            return await state.save_page(
                db,
                self._run,
                cursor=next_cursor,
                imported=len(versions),
                missed=missed,
                total=total,
                note=self._note,
            )

    def _versions(self, listed: Iterable[dict[str, Any]]) -> list[OrderVersion]:
        """The page's orders read by the webhook's own rules, each order once (its newest)."""
        newest: dict[str, OrderVersion] = {}
        for order in listed:
            try:
                version = self._rules.order_version(parse_payload(orjson.dumps(order)))
            except MalformedDelivery:
                log.warning("sync skipped an order without an id", extra=self._log)
                continue
            seen = newest.get(version.platform_order_id)
            if seen is None or _later(version, seen):
                newest[version.platform_order_id] = version
        return list(newest.values())

    async def _write(self, db: Transaction, versions: list[OrderVersion]) -> int:
        """Store the versions; how many of them recovered a change the webhooks missed."""
        params = {
            "integration_id": self._run.integration_id,
            "user_id": self._owner,
            "platform": self._target.type,
        }
        written = await db.execute(_STORE_PAGE, params | writer.batch_parameters(versions))
        return missed_by_webhook(
            (row.source_updated_at for row in written), connected_at=self._target.created_at
        )

    async def _keep_token(self, db: Transaction, store: StoreApi) -> None:
        """Cache a Shopify app's new access token on the integration, encrypted."""
        token = store.token
        if token is None or token == self._token or token.expires_at is None:
            return
        await db.execute(
            _SAVE_TOKEN,
            {
                "integration": self._run.integration_id,
                "token": encrypt(self._settings.encryption_key, token.value),
                "token_expires_at": token.expires_at,
            },
        )
        self._token = token

    async def _failed(self, error: str, *, restart: bool = False) -> SyncState:
        async with self._acting() as db:
            failed = await state.fail(db, self._run, error, restart=restart)
            return failed if failed is not None else await state.read(db, self._run.integration_id)

    async def _stopped(self) -> None:
        """The run was interrupted: say so, best effort (the database may be what failed)."""
        try:
            async with asyncio.timeout(5):
                async with self._acting() as db:
                    await state.fail(db, self._run, INTERRUPTED)
        except Exception:
            log.warning("sync stopped without recording it", extra=self._log, exc_info=True)

    @asynccontextmanager
    async def _acting(self) -> AsyncIterator[Transaction]:
        async with begin(self._database) as db:
            await act_as(db, self._owner)
            yield db


@dataclass(frozen=True, slots=True)
class _BulkCursor:
    """Where a run is with a bulk operation: its id, and how many of its orders are in."""

    id: str
    done: int

    def text(self) -> str:
        return BULK_CURSOR + orjson.dumps({"id": self.id, "done": self.done}).decode()

    @classmethod
    def read(cls, cursor: str) -> _BulkCursor:
        saved = orjson.loads(cursor.removeprefix(BULK_CURSOR))
        return cls(str(saved["id"]), int(saved["done"]))


def _later(version: OrderVersion, other: OrderVersion) -> bool:
    if version.source_updated_at is None:
        return other.source_updated_at is None
    return other.source_updated_at is None or version.source_updated_at >= other.source_updated_at


def _cached_token(settings: Settings, target: Row[Any]) -> AccessToken | None:
    if target.access_token is None:
        return None
    return AccessToken(
        decrypt(settings.encryption_key, target.access_token), target.access_token_expires_at
    )
