"""Mixed traffic against a running server, a tally of every outcome, and samples of what
the server holds (each worker's RSS, the app role's PostgreSQL connections) once a second.

Every virtual user is bounded by a deadline and by a request count; traffic goes only to
the local server it was given. Shared by tests/reliability/ and `make soak`.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db.urls import APP_ROLE
from astra.http import DATABASE_DOWN
from astra.sync.queue import QUEUE_APPLICATION_NAME
from testkit.harness import (
    Account,
    AppServer,
    describe,
    existing_integration_ids,
    new_client,
    signed_delivery,
    stored_delivery_ids,
)

KINDS = ("list", "create", "edit", "delete", "webhook")
EXPECTED_STATUS = {"list": 200, "create": 201, "edit": 200, "delete": 204, "webhook": 200}
# Relative weights of the request kinds in the mix.
MIX = {"list": 40, "create": 15, "edit": 15, "delete": 10, "webhook": 20}
# The webhook route's own 503 (the delivery is rolled back, the store sends it again).
DELIVERY_NOT_STORED = "The delivery could not be stored; send it again later."
UNAVAILABLE_MESSAGES = frozenset({DATABASE_DOWN, DELIVERY_NOT_STORED})
# A virtual user keeps at most this many integrations of its own: creates turn into
# deletes above it, so tables and list pages reach a steady size instead of growing.
OWN_LIMIT = 20

OK, UNAVAILABLE, CONNECTION, ERROR = "ok", "unavailable", "connection", "error"


def classify(kind: str, response: httpx.Response) -> str:
    """ok: the expected 2xx. unavailable: a 503 that says so, in JSON, with Retry-After.
    error: anything else (a 500, a traceback, HTML, an unexpected 4xx...)."""
    if response.status_code == EXPECTED_STATUS[kind]:
        return OK
    if (
        response.status_code == 503
        and response.headers.get("retry-after", "").isdigit()
        and response.headers.get("content-type") == "application/json"
        and response.json().get("detail") in UNAVAILABLE_MESSAGES
    ):
        return UNAVAILABLE
    return ERROR


@dataclass
class Tally:
    """What every request got. The timeline and the examples make failures explainable."""

    keep_timeline: bool = False
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    slowest_ms: dict[str, float] = field(default_factory=dict)
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    # Delivery id -> outcome; integrations whose create answered 201 and that no delete
    # was sent for (each must exist afterwards).
    deliveries: dict[str, str] = field(default_factory=dict)
    created: int = 0
    kept: set[str] = field(default_factory=set)

    def record(self, kind: str, outcome: str, started: float, detail: dict[str, Any]) -> None:
        finished = time.monotonic()
        self.counts[kind, outcome] += 1
        took_ms = (finished - started) * 1000
        self.slowest_ms[outcome] = max(self.slowest_ms.get(outcome, 0.0), took_ms)
        if outcome == OK:
            self.latencies_ms[kind].append(took_ms)
        if self.keep_timeline:
            self.timeline.append((finished, kind, outcome))
        if outcome in (ERROR, CONNECTION) and len(self.failures) < 50:
            self.failures.append({"kind": kind, "outcome": outcome, **detail})

    def total(self, outcome: str | None = None) -> int:
        return sum(n for (_, o), n in self.counts.items() if outcome in (None, o))


async def _send(
    tally: Tally, kind: str, request: Awaitable[httpx.Response]
) -> tuple[str, httpx.Response | None]:
    """Await the request (not started before), record what it got, return the outcome and
    the response (None for a connection error)."""
    started = time.monotonic()
    try:
        response = await request
    except httpx.TransportError as exc:
        tally.record(kind, CONNECTION, started, {"exception": f"{type(exc).__name__}: {exc}"})
        return CONNECTION, None
    outcome = classify(kind, response)
    tally.record(kind, outcome, started, describe(response))
    return outcome, response


async def virtual_user(
    account: Account,
    stores_client: httpx.AsyncClient,
    tally: Tally,
    *,
    deadline: float,
    max_requests: int,
    seed: int,
    stop: asyncio.Event | None = None,
) -> None:
    """One user clicking through the API, plus the webhooks its stores send, until the
    deadline, `max_requests` or `stop`, whichever comes first."""
    # Seeded, so a run's mix can be replayed; nothing here is a secret.
    rng = random.Random(seed)  # noqa: S311
    own: list[str] = []
    kinds, weights = list(MIX), list(MIX.values())
    client = account.client
    for serial in range(max_requests):
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return
        kind = rng.choices(kinds, weights)[0]
        if kind == "webhook" and not account.stores:
            kind = "list"
        if kind in ("edit", "delete") and not own:
            kind = "create"
        if kind == "create" and len(own) >= OWN_LIMIT:
            kind = "delete"
        if kind == "list":
            await _send(tally, kind, client.get("/api/integrations", params={"limit": 50}))
        elif kind == "create":
            domain = f"load-{uuid.uuid4().hex[:12]}.example.com"
            payload = {"name": f"Load {serial}", "type": "woocommerce", "domain": domain}
            outcome, response = await _send(
                tally, kind, client.post("/api/integrations", json=payload)
            )
            if outcome == OK and response is not None:
                own.append(response.json()["id"])
                tally.created += 1
                tally.kept.add(own[-1])
        elif kind == "edit":
            changes = {"name": f"Edited {serial}", "is_active": rng.random() < 0.5}
            target = rng.choice(own)
            await _send(tally, kind, client.put(f"/api/integrations/{target}", json=changes))
        elif kind == "delete":
            # Forgotten whatever the answer: after a failure it may or may not be gone.
            target = own.pop(rng.randrange(len(own)))
            tally.kept.discard(target)
            await _send(tally, kind, client.delete(f"/api/integrations/{target}"))
        else:
            store = rng.choice(account.stores)
            delivery_id, body, headers = signed_delivery(store, rng.randrange(1, 10**12))
            request = stores_client.post(store.url, content=body, headers=headers)
            tally.deliveries[delivery_id], _ = await _send(tally, kind, request)


@dataclass
class Sample:
    elapsed: float
    rss_mb: dict[int, float]
    connections: Counter[str]

    @property
    def connection_count(self) -> int:
        return sum(self.connections.values())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for {pid}")


async def app_connections(engine: AsyncEngine) -> Counter[str]:
    """The app role's request-pool connections by state (active, idle, idle in
    transaction...); the job queue's own few (its pool and listener) are not the pool's."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT coalesce(state, 'starting') AS state, count(*) AS n "
                "FROM pg_stat_activity WHERE usename = :role "
                "AND application_name IS DISTINCT FROM :queue GROUP BY 1"
            ),
            {"role": APP_ROLE, "queue": QUEUE_APPLICATION_NAME},
        )
        return Counter({row.state: row.n for row in rows})


async def sample_once(pids: list[int], engine: AsyncEngine, started: float) -> Sample:
    return Sample(
        elapsed=time.monotonic() - started,
        rss_mb={pid: rss_mb(pid) for pid in pids},
        connections=await app_connections(engine),
    )


async def sample_every_second(
    pids: list[int], engine: AsyncEngine, samples: list[Sample], stop: asyncio.Event
) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append(await sample_once(pids, engine, started))
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


@dataclass
class LoadRun:
    seconds: float
    workers: int
    pool_limit: int
    tally: Tally
    samples: list[Sample]
    # Filled in by `settle`, from the database after the traffic.
    deliveries_ok_stored: int = 0
    kept_missing: int = 0

    @property
    def deliveries_ok(self) -> set[str]:
        return {d for d, outcome in self.tally.deliveries.items() if outcome == OK}

    def sample_at(self, elapsed: float) -> Sample:
        return next(s for s in self.samples if s.elapsed >= elapsed)

    def rss_growth_mb(self, since: float) -> dict[int, float]:
        """Per worker: the last sample's RSS minus the first one `since` seconds in."""
        base = self.sample_at(since)
        return {pid: self.samples[-1].rss_mb[pid] - base.rss_mb[pid] for pid in base.rss_mb}

    def max_connections(self) -> int:
        return max(sample.connection_count for sample in self.samples)


async def run_load(
    server: AppServer,
    engine: AsyncEngine,
    accounts: list[Account],
    *,
    seconds: float,
    users_per_account: int,
    pool_limit: int,
    seed: int = 1,
) -> LoadRun:
    """Drive the mixed traffic for `seconds`, sampling once a second."""
    tally = Tally()
    samples: list[Sample] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_every_second(server.worker_pids(), engine, samples, stop))
    deadline = time.monotonic() + seconds
    async with new_client(server.base_url) as stores_client:
        await asyncio.gather(
            *(
                virtual_user(
                    account,
                    stores_client,
                    tally,
                    deadline=deadline,
                    # A ceiling far above what the deadline lets through.
                    max_requests=int(seconds * 1000),
                    seed=seed * 10_000 + n,
                )
                for n, account in enumerate(accounts * users_per_account)
            )
        )
    stop.set()
    await sampler
    return LoadRun(seconds, server.workers, pool_limit, tally, samples)


async def settle(run: LoadRun, engine: AsyncEngine, accounts: list[Account]) -> None:
    """Count, in the database, what the 2xx answers promised."""
    stores = [store for account in accounts for store in account.stores]
    stored = await stored_delivery_ids(engine, stores)
    run.deliveries_ok_stored = len(run.deliveries_ok & stored)
    kept = sorted(run.tally.kept)
    run.kept_missing = len(kept) - len(await existing_integration_ids(engine, kept))


async def wait_until_idle(engine: AsyncEngine, within: float) -> Counter[str]:
    """The app role's connections once none is busy (or as they are after `within` s)."""
    deadline = time.monotonic() + within
    while True:
        connections = await app_connections(engine)
        if set(connections) <= {"idle"} or time.monotonic() >= deadline:
            return connections
        await asyncio.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(run: LoadRun, *, warmup: float) -> str:
    """The report's tables: requests by kind, server memory, connections, deliveries."""
    tally = run.tally
    lines = [
        f"{run.seconds:.0f} s of mixed traffic, {run.workers} workers, "
        f"{tally.total() / run.seconds:.0f} requests/s",
        "",
        "| kind | requests | ok | 503 | connection errors | other errors | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        n = {o: tally.counts[kind, o] for o in (OK, UNAVAILABLE, CONNECTION, ERROR)}
        latencies = tally.latencies_ms[kind]
        lines.append(
            f"| {kind} | {sum(n.values())} | {n[OK]} | {n[UNAVAILABLE]} | {n[CONNECTION]} "
            f"| {n[ERROR]} | {percentile(latencies, 50):.1f} | {percentile(latencies, 99):.1f} |"
        )
    lines.append(
        f"| all | {tally.total()} | {tally.total(OK)} | {tally.total(UNAVAILABLE)} "
        f"| {tally.total(CONNECTION)} | {tally.total(ERROR)} | | |"
    )
    # Growth over the second half too: a leak keeps its pace, a warming cache levels off.
    halfway = (warmup + run.samples[-1].elapsed) / 2
    warm, since_warm, since_half = (
        run.sample_at(warmup),
        run.rss_growth_mb(warmup),
        run.rss_growth_mb(halfway),
    )
    lines += [
        "",
        f"| worker | RSS MB at start | after {warmup:.0f} s warm-up | last | max "
        f"| growth after warm-up | growth in the last {run.samples[-1].elapsed - halfway:.0f} s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for worker, pid in enumerate(run.samples[0].rss_mb, start=1):
        peak = max(s.rss_mb[pid] for s in run.samples)
        lines.append(
            f"| {worker} | {run.samples[0].rss_mb[pid]:.1f} | {warm.rss_mb[pid]:.1f} "
            f"| {run.samples[-1].rss_mb[pid]:.1f} | {peak:.1f} | {since_warm[pid]:+.1f} "
            f"| {since_half[pid]:+.1f} |"
        )
    ok_deliveries = len(run.deliveries_ok)
    lines += [
        "",
        f"App role connections (pg_stat_activity, {len(run.samples)} samples): max "
        f"{run.max_connections()}, limit {run.pool_limit} "
        f"({run.workers} workers x (pool + overflow)).",
        f"Webhook deliveries answered 2xx: {ok_deliveries}; of those stored: "
        f"{run.deliveries_ok_stored}.",
        f"Integrations created (201): {tally.created}; missing afterwards although never "
        f"deleted: {run.kept_missing} of {len(tally.kept)}.",
    ]
    return "\n".join(lines)
