"""Each integration's sync, as one row of `syncs`: what people see (state, progress, errors)
and what a run needs to resume (its listing's `updated_since` and `cursor`: a page's, or a
Shopify bulk operation's id and how many of its orders are in) and to be the only one (its
claim).

At most one sync runs per store, whatever the number of processes: a run starts only by
`claim`, one conditional upsert of the row, which succeeds unless another run holds a
live claim; every later write of the run names its claim (`run_id`) and fails once another
run took over, so a run that lost its claim writes nothing more. A claim lives while its
run beats (`heartbeat_at`, at least every `BEAT`); one silent for `LEASE` belongs to a
dead process, and the next run takes over and resumes from the saved cursor.

Reads and requests go through `astra.access` (403/404) and RLS (owner or admin).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    Boolean,
    Row,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from astra.access import ensure_visible
from astra.auth.principal import Principal
from astra.db.session import Transaction
from astra.db.tables import SyncStatus, integrations, syncs
from astra.errors import Conflict

# A claim whose run has not beaten for this long is a dead process's.
LEASE = timedelta(minutes=2)
# How often a live run beats, at the least: well within the lease.
BEAT = timedelta(seconds=30)
# A later sync lists the orders updated since the last one began, less this much: clocks
# disagree a little, and an order changed while the last one ran may have been missed.
OVERLAP = timedelta(minutes=5)

NO_CREDENTIALS = (
    "Add the store's API credentials first: Astra imports the orders through the store's API."
)


@dataclass(frozen=True, slots=True)
class SyncState:
    """An integration's sync as people see it.

    `imported` and `total` describe the current run, or the last one: orders of its
    listing taken in so far (written, or already held in a version at least as new), of
    how many the store said the listing holds (WooCommerce's X-WP-Total, Shopify's
    ordersCount; None when it does not say).
    `missed_by_webhook` counts over every run (see `astra.sync.engine.missed`). `note`
    says what the store's listing leaves out (Shopify's 60 days), for the card.
    """

    state: SyncStatus
    imported: int = 0
    total: int | None = None
    missed_by_webhook: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_synced_at: datetime | None = None
    error: str | None = None
    note: str | None = None

    @classmethod
    def from_row(cls, row: Row[Any] | None) -> SyncState:
        if row is None:
            return NEVER
        values = row._mapping
        return cls(
            **{name: values[name] for name in _STATE_FIELDS} | {"state": SyncStatus(row.state)}
        )


NEVER = SyncState(SyncStatus.never)
_STATE_FIELDS = tuple(SyncState.__dataclass_fields__)
STATE_COLUMNS = tuple(syncs.c[name] for name in _STATE_FIELDS)


@dataclass(frozen=True, slots=True)
class Run:
    """A claimed run: what it lists, from where, and the state it started from."""

    integration_id: uuid.UUID
    run_id: uuid.UUID
    updated_since: datetime | None
    cursor: str | None
    state: SyncState


_ID = syncs.c.integration_id == bindparam("sync_of")
_MINE = and_(_ID, syncs.c.run_id == bindparam("claim"))
_LEASE_OVER = syncs.c.heartbeat_at < func.now() - LEASE
# Neither queued already nor held by a live run.
_REQUESTABLE = and_(
    syncs.c.state != SyncStatus.queued, or_(syncs.c.state != SyncStatus.running, _LEASE_OVER)
)

_READ = select(*STATE_COLUMNS).where(_ID)

_REQUEST = (
    insert(syncs)
    .from_select(
        ["integration_id", "user_id", "state", "requested_at"],
        select(
            integrations.c.id, integrations.c.user_id, literal(SyncStatus.queued.value), func.now()
        ).where(integrations.c.id == bindparam("sync_of")),
    )
    .on_conflict_do_update(
        index_elements=[syncs.c.integration_id],
        set_={
            "state": SyncStatus.queued.value,
            "requested_at": func.now(),
            "run_id": None,
            "heartbeat_at": None,
            "error": None,
        },
        where=_REQUESTABLE,
    )
)
_HAS_CREDENTIALS = select(integrations.c.credentials_kind.is_not(None)).where(
    integrations.c.id == bindparam("sync_of")
)


async def get_sync(db: Transaction, principal: Principal, integration_id: uuid.UUID) -> SyncState:
    """The integration's sync (403/404 unless the principal may see the integration)."""
    await ensure_visible(db, principal, integration_id)
    return await read(db, integration_id)


async def request_sync(
    db: Transaction, principal: Principal, integration_id: uuid.UUID
) -> SyncState:
    """Mark the integration's sync queued, and return its state: the queued or running one
    when there is one already (asking again changes nothing). Starting the run is the job
    queue's. 403/404 as for the integration; 409 without credentials to call the store with.
    """
    await ensure_visible(db, principal, integration_id)
    params = {"sync_of": integration_id}
    if not (await db.execute(_HAS_CREDENTIALS, params)).scalar_one():
        raise Conflict(NO_CREDENTIALS)
    await db.execute(_REQUEST, params)
    return await read(db, integration_id)


async def read(db: Transaction, integration_id: uuid.UUID) -> SyncState:
    row = (await db.execute(_READ, {"sync_of": integration_id})).one_or_none()
    return SyncState.from_row(row)


_READ_MANY = select(syncs.c.integration_id, *STATE_COLUMNS).where(
    # One statement whatever the page's size (an IN list would render per length).
    syncs.c.integration_id == any_(bindparam("syncs_of", type_=ARRAY(Uuid)))
)


async def read_many(
    db: Transaction, integration_ids: list[uuid.UUID]
) -> dict[uuid.UUID, SyncState]:
    """The syncs of these integrations, in one query (a page of cards): only those RLS lets
    the caller see, and only those that ever synced (the others are NEVER)."""
    if not integration_ids:
        return {}
    rows = (await db.execute(_READ_MANY, {"syncs_of": integration_ids})).all()
    return {row.integration_id: SyncState.from_row(row) for row in rows}


# A run resumes the unfinished listing it finds (a saved cursor), or starts a new one:
# everything the first time, then what changed since the last finished run began.
_FRESH = syncs.c.cursor.is_(None)
_CLAIM = (
    insert(syncs)
    .values(
        integration_id=bindparam("sync_of"),
        user_id=bindparam("owner"),
        state=SyncStatus.running.value,
        run_id=bindparam("claim"),
        heartbeat_at=func.now(),
        started_at=func.now(),
    )
    .on_conflict_do_update(
        index_elements=[syncs.c.integration_id],
        set_={
            "state": SyncStatus.running.value,
            "run_id": bindparam("claim"),
            "heartbeat_at": func.now(),
            "error": None,
            "finished_at": None,
            "started_at": case((_FRESH, func.now()), else_=syncs.c.started_at),
            "imported": case((_FRESH, 0), else_=syncs.c.imported),
            "total": case((_FRESH, None), else_=syncs.c.total),
            "updated_since": case(
                (_FRESH, syncs.c.synced_through - OVERLAP), else_=syncs.c.updated_since
            ),
        },
        where=or_(syncs.c.state != SyncStatus.running, _LEASE_OVER),
    )
    .returning(syncs.c.updated_since, syncs.c.cursor, *STATE_COLUMNS)
)


async def claim(db: Transaction, integration_id: uuid.UUID, user_id: uuid.UUID) -> Run | None:
    """Start (or resume) a run of the integration's sync; None while another run holds a
    live claim. The caller acts as the owner, `user_id`, and commits."""
    run_id = uuid.uuid4()
    params = {"sync_of": integration_id, "owner": user_id, "claim": run_id}
    row = (await db.execute(_CLAIM, params)).one_or_none()
    if row is None:
        return None
    return Run(integration_id, run_id, row.updated_since, row.cursor, SyncState.from_row(row))


class LostClaim(Exception):
    """Another run took over this one's claim (its lease ran out): this run stops."""


_SAVE_PAGE = (
    update(syncs)
    .where(_MINE)
    .values(
        cursor=bindparam("next_cursor"),
        imported=syncs.c.imported + bindparam("taken_in"),
        missed_by_webhook=syncs.c.missed_by_webhook + bindparam("missed"),
        total=func.coalesce(syncs.c.total, bindparam("listed")),
        note=bindparam("run_note"),
        heartbeat_at=func.now(),
    )
    .returning(*STATE_COLUMNS)
)
_FINISH = (
    update(syncs)
    .where(_MINE)
    .values(
        state=SyncStatus.done.value,
        imported=syncs.c.imported + bindparam("taken_in"),
        missed_by_webhook=syncs.c.missed_by_webhook + bindparam("missed"),
        total=func.coalesce(syncs.c.total, bindparam("listed")),
        note=bindparam("run_note"),
        run_id=None,
        heartbeat_at=None,
        cursor=None,
        updated_since=None,
        synced_through=syncs.c.started_at,
        finished_at=func.now(),
        last_synced_at=func.now(),
    )
    .returning(*STATE_COLUMNS)
)


async def save_page(
    db: Transaction,
    run: Run,
    *,
    cursor: str | None,
    imported: int,
    missed: int,
    total: int | None,
    note: str | None,
) -> SyncState:
    """Count a page in and move the run's cursor past it, in the caller's transaction (the
    one that wrote the page's orders); the last page (`cursor` None) finishes the run.
    Raises LostClaim when the run no longer holds its claim: roll back then."""
    params = {
        "sync_of": run.integration_id,
        "claim": run.run_id,
        "taken_in": imported,
        "missed": missed,
        "listed": total,
        "run_note": note,
    }
    if cursor is None:
        statement = _FINISH
    else:
        statement, params["next_cursor"] = _SAVE_PAGE, cursor
    row = (await db.execute(statement, params)).one_or_none()
    if row is None:
        raise LostClaim
    return SyncState.from_row(row)


_BEAT = update(syncs).where(_MINE).values(heartbeat_at=func.now()).returning(syncs.c.run_id)
_FAIL = (
    update(syncs)
    .where(_MINE)
    .values(
        state=SyncStatus.failed.value,
        error=bindparam("reason"),
        run_id=None,
        heartbeat_at=None,
        finished_at=func.now(),
        cursor=case((bindparam("restart", type_=Boolean()), None), else_=syncs.c.cursor),
    )
    .returning(*STATE_COLUMNS)
)


async def beat(db: Transaction, run: Run) -> None:
    """The run is alive (LostClaim if it is no longer the one that runs)."""
    params = {"sync_of": run.integration_id, "claim": run.run_id}
    if (await db.execute(_BEAT, params)).one_or_none() is None:
        raise LostClaim


async def fail(db: Transaction, run: Run, error: str, *, restart: bool = False) -> SyncState | None:
    """End the run as failed, saying why; its cursor stays, so the next run resumes there
    (with `restart`, it goes: the next run starts a new listing). None when the run had
    lost its claim."""
    params = {
        "sync_of": run.integration_id,
        "claim": run.run_id,
        "reason": error,
        "restart": restart,
    }
    row = (await db.execute(_FAIL, params)).one_or_none()
    return None if row is None else SyncState.from_row(row)
