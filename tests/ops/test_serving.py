"""`astra serve` as operators run it, in a subprocess on the test database: metrics counted
over every worker process (through the token and the loopback port), a SIGTERM under load
of signed deliveries (nothing answered 2xx is lost, nothing answered 5xx is stored, exit 0
within ASTRA_SHUTDOWN_SECONDS), and a sync job cut short by a SIGTERM that goes back to
the queue and finishes, from where it stopped, under the next server."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from unittest.mock import ANY

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.ops import samples
from testkit.processes import HOST, free_port, start_serve, wait_until_serving
from testkit.simulators.server import StoreServer
from testkit.simulators.woocommerce import SimulatedWooCommerce
from testkit.stores import connect_store, encode, fetch, shopify_order, signed_headers
from tests.conftest import Account, TestDatabase, running
from tests.sync.test_workers import environment, eventually, log_lines, registered_workers

TOKEN = "serve-metrics-token-0123456789abcdef"


@pytest.fixture(scope="module")
async def app(test_database: TestDatabase, store_server: StoreServer) -> AsyncIterator[FastAPI]:
    """The in-process app (for signing in and connecting stores) calling the simulated stores."""
    async with running(store_server.settings(test_database.settings)) as application:
        yield application


def serve_environment(
    test_database: TestDatabase, store_server: StoreServer, **settings: str
) -> dict[str, str]:
    return environment(
        test_database,
        ASTRA_STORE_API_URL=store_server.url_template,
        ASTRA_STORE_CA_BUNDLE=str(store_server.ca_file),
        **settings,
    )


async def wait_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    # In a thread: the simulated stores answer on this event loop meanwhile.
    await asyncio.to_thread(wait_until_serving, process, url, log, timeout=90)


async def sigterm(process: subprocess.Popen[bytes], *, within: float) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds it took). Killed, and failed, past `within` + 10 s."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(process.wait, within + 10)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return code, time.monotonic() - sent


async def sync_jobs(owner_engine: AsyncEngine, integration_id: uuid.UUID) -> list[tuple[str, int]]:
    rows = await fetch(
        owner_engine,
        "SELECT status, id FROM procrastinate_jobs WHERE task_name = 'astra.sync_store'"
        " AND args->>'integration_id' = :id ORDER BY id",
        id=str(integration_id),
    )
    return [(row["status"], row["id"]) for row in rows]


def counted(text: str, name: str, **labels: str) -> float:
    return sum(
        value
        for sample, found, value in samples(text)
        if sample == name and labels.items() <= found.items()
    )


async def test_metrics_add_up_every_worker_process(
    test_database: TestDatabase, store_server: StoreServer, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    env = serve_environment(
        test_database, store_server, ASTRA_METRICS_TOKEN=TOKEN, ASTRA_DB_POOL_SIZE="3"
    )
    server = start_serve(env, port, log, workers=2, metrics_port=metrics_port)
    url = f"http://{HOST}:{port}"
    try:
        await wait_serving(server, url, log)
        await eventually(
            lambda: _scraped(
                f"http://{HOST}:{metrics_port}/metrics", "astra_db_pool_connections", 6
            ),
            within=30,
        )
        by_token = {"authorization": f"Bearer {TOKEN}"}
        before = (await _get(f"{url}/metrics", by_token)).text
        # Each on a connection of its own, so the kernel spreads them over both workers.
        for _ in range(40):
            assert (await _get(f"{url}/api/auth/me")).status_code == 401
        through_token = (await _get(f"{url}/metrics", by_token)).text
        through_port = (await _get(f"http://{HOST}:{metrics_port}/metrics")).text
        me = {"route": "/api/auth/me", "status": "401"}
        name = "astra_http_requests_total"
        assert counted(through_token, name, **me) - counted(before, name, **me) == 40
        assert counted(through_port, name, **me) == counted(through_token, name, **me)
        # Both processes' pools (3 connections each) are in the one sum.
        assert counted(through_port, "astra_db_pool_connections", state="max") == 6
        assert counted(through_port, "astra_metrics_database_up") == 1
        assert (await _get(f"{url}/metrics")).status_code == 401
    finally:
        code, _ = await sigterm(server, within=20)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


async def test_a_metrics_port_without_a_token_keeps_the_app_port_closed(
    test_database: TestDatabase, store_server: StoreServer, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    server = start_serve(
        serve_environment(test_database, store_server), port, log, metrics_port=metrics_port
    )
    try:
        await wait_serving(server, f"http://{HOST}:{port}", log)
        assert (await _get(f"http://{HOST}:{port}/metrics")).status_code == 404
        assert (await _get(f"http://{HOST}:{metrics_port}/metrics")).status_code == 200
        assert (
            await _get(
                f"http://{HOST}:{metrics_port}/metrics", {"host": f"localhost:{metrics_port}"}
            )
        ).status_code == 200
        # A page a browser on this host loaded, its name re-pointed at 127.0.0.1 (DNS
        # rebinding), names its own host: refused.
        rebound = await _get(
            f"http://{HOST}:{metrics_port}/metrics", {"host": f"attacker.example:{metrics_port}"}
        )
        assert rebound.status_code == 400
        assert "astra_" not in rebound.text
        # Bound to 127.0.0.1 itself: another address of this machine does not answer.
        with pytest.raises(httpx.ConnectError):
            await _get(f"http://127.0.0.2:{metrics_port}/metrics")
    finally:
        code, _ = await sigterm(server, within=20)
    # One process: exit 0 as well, not the re-raised signal.
    assert code == 0, log.read_text()


async def test_a_metrics_port_in_use_stops_astra_serve_at_once(
    test_database: TestDatabase, store_server: StoreServer, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        log = tmp_path / "serve.log"
        server = start_serve(
            serve_environment(test_database, store_server),
            free_port(),
            log,
            metrics_port=taken.getsockname()[1],
        )
        code = await asyncio.to_thread(server.wait, 60)
    assert code == 1
    assert "error: cannot serve metrics on 127.0.0.1:" in log.read_text()


async def test_a_multiprocess_dir_others_may_write_to_stops_astra_serve_at_once(
    test_database: TestDatabase, store_server: StoreServer, tmp_path: Path
) -> None:
    """Anyone who may write to the samples' directory could plant a link where a worker's
    samples file goes (and have it write through it) or samples of their own: a given
    PROMETHEUS_MULTIPROC_DIR open to the group or others is refused, nothing in it touched."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    planted = shared / "counter_1.db"
    planted.write_bytes(b"someone else's")
    log = tmp_path / "serve.log"
    server = start_serve(
        serve_environment(test_database, store_server, PROMETHEUS_MULTIPROC_DIR=str(shared)),
        free_port(),
        log,
    )
    try:
        code = await asyncio.to_thread(server.wait, 60)
    finally:
        if server.poll() is None:
            server.kill()
    assert code == 1
    assert f"error: PROMETHEUS_MULTIPROC_DIR {shared} may be written to by" in log.read_text()
    assert planted.read_bytes() == b"someone else's"


async def test_a_given_multiprocess_dir_loses_only_earlier_samples(
    test_database: TestDatabase, store_server: StoreServer, tmp_path: Path
) -> None:
    """Emptied at start means an earlier run's samples files, not whatever else the
    operator keeps there (another program's `.db` files)."""
    given = tmp_path / "samples"
    given.mkdir(mode=0o700)
    stale, kept = given / "counter_1.db", given / "inventory.db"
    stale.write_bytes(b"")
    kept.write_bytes(b"keep me")
    port, log = free_port(), tmp_path / "serve.log"
    server = start_serve(
        serve_environment(test_database, store_server, PROMETHEUS_MULTIPROC_DIR=str(given)),
        port,
        log,
    )
    try:
        await wait_serving(server, f"http://{HOST}:{port}", log)
        assert not stale.exists()
        assert kept.read_bytes() == b"keep me"
    finally:
        code, _ = await sigterm(server, within=30)
    assert code == 0
    assert kept.read_bytes() == b"keep me"


async def _get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url, headers=headers)


async def _scraped(url: str, name: str, expected: float) -> bool:
    try:
        return counted((await _get(url)).text, name, state="max") == expected
    except httpx.TransportError:
        return False


SHUTDOWN_SECONDS = 10
SENDERS = 32


async def test_sigterm_under_load_loses_no_acknowledged_delivery(
    test_database: TestDatabase,
    store_server: StoreServer,
    seller: Account,
    owner_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    store = await connect_store(seller, "shopify", f"load-{uuid.uuid4().hex[:6]}.myshopify.com")
    port = free_port()
    log = tmp_path / "serve.log"
    env = serve_environment(
        test_database, store_server, ASTRA_SHUTDOWN_SECONDS=str(SHUTDOWN_SECONDS)
    )
    server = start_serve(env, port, log, workers=2)
    url = f"http://{HOST}:{port}"
    await wait_serving(server, url, log)

    answers: dict[str, int | str] = {}
    numbers = itertools.count(1)
    stopped = asyncio.Event()
    after_sigterm: list[int | str] = []

    async def send(client: httpx.AsyncClient) -> None:
        while not stopped.is_set():
            n = next(numbers)
            body = encode(shopify_order(7_000_000 + n))
            webhook_id = f"load-{n}"
            headers = signed_headers(store, body, webhook_id=webhook_id)
            try:
                response = await client.post(f"{url}{store.url}", content=body, headers=headers)
                answers[webhook_id] = response.status_code
            except httpx.TransportError as exc:
                # No answer: the store would send it again. Either way is fine.
                answers[webhook_id] = type(exc).__name__
                await asyncio.sleep(0.02)
            if signalled:
                after_sigterm.append(answers[webhook_id])

    signalled = False
    limits = httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        senders = [asyncio.create_task(send(client)) for _ in range(SENDERS)]
        await asyncio.sleep(3)
        # And one delivery that never finishes arriving: the drain must not wait for it
        # past its share of the bound.
        _, stuck = await asyncio.open_connection(HOST, port)
        stuck.write(
            f"POST {store.url} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            'Content-Length: 100000\r\n\r\n{"id": '.encode()
        )
        await stuck.drain()
        await asyncio.sleep(0.2)
        signalled = True
        try:
            code, took = await sigterm(server, within=SHUTDOWN_SECONDS)
        finally:
            stopped.set()
            await asyncio.gather(*senders)
            stuck.close()

    stored = {
        row["delivery_id"]
        for row in await fetch(
            owner_engine,
            "SELECT delivery_id FROM webhook_deliveries WHERE integration_id = :id",
            id=store.id,
        )
    }
    acknowledged = {
        key for key, status in answers.items() if isinstance(status, int) and status < 300
    }
    failed = {key for key, status in answers.items() if isinstance(status, int) and status >= 500}
    unanswered = {key for key, status in answers.items() if isinstance(status, str)}
    print(
        f"\nshutdown under load: {len(answers)} sent, {len(acknowledged)} answered 2xx, "
        f"{len(failed)} 5xx, {len(unanswered)} unanswered; {len(after_sigterm)} finished after "
        f"SIGTERM ({sum(1 for s in after_sigterm if s == 200)} of them 200); exit {code} in {took:.2f} s"
    )
    assert code == 0, log.read_text()[-3000:]
    # The stuck request was given its half of the bound, then cut off.
    assert SHUTDOWN_SECONDS / 2 <= took < SHUTDOWN_SECONDS
    assert len(acknowledged) > 100
    assert acknowledged <= stored, sorted(acknowledged - stored)[:10]
    assert not failed & stored, sorted(failed & stored)[:10]
    # Only what was answered, or left unanswered, may be stored.
    assert stored <= acknowledged | unanswered
    # The one traceback uvicorn logs is the stuck request's, cancelled past its time.
    errors = [line for line in log_lines(log) if "exception" in line]
    assert errors, "the stuck request was not cut off"
    assert all("timeout graceful shutdown exceeded" in str(line["exception"]) for line in errors)


async def test_a_sync_cut_short_by_sigterm_goes_back_to_the_queue_and_finishes_later(
    test_database: TestDatabase,
    store_server: StoreServer,
    seller: Account,
    owner_engine: AsyncEngine,
    fresh_domain: Callable[[str], str],
    tmp_path: Path,
) -> None:
    woo = store_server.add(
        SimulatedWooCommerce(fresh_domain("requeue{}.example.com"), order_count=350)
    )
    key = woo.add_key("read")
    credentials = {"consumer_key": key.consumer_key, "consumer_secret": key.consumer_secret}
    store = await connect_store(seller, "woocommerce", woo.domain, credentials)
    # Queued; no worker runs it yet (the in-process app has none).
    assert (await seller.client.post(f"/api/integrations/{store.id}/sync")).status_code == 202
    (queued,) = await fetch(
        owner_engine,
        "SELECT id FROM procrastinate_jobs WHERE task_name = 'astra.sync_store' AND args->>'integration_id' = :id",
        id=str(store.id),
    )
    job_id = queued["id"]
    # Each page of 100 orders takes a second and a half at the store.
    woo.stall_seconds = 1.5
    env = serve_environment(test_database, store_server, ASTRA_SHUTDOWN_SECONDS="6")
    log = tmp_path / "first.log"
    server = start_serve(env, free_port(), log)
    try:

        async def one_page_in() -> bool:
            rows = await fetch(
                owner_engine,
                "SELECT state, imported FROM syncs WHERE integration_id = :id",
                id=store.id,
            )
            return bool(rows) and rows[0]["state"] == "running" and rows[0]["imported"] >= 100

        await eventually(one_page_in, within=60)
    finally:
        code, took = await sigterm(server, within=6)
    assert code == 0, log.read_text()[-3000:]
    assert took < 6
    # The sync waits in the queue again: its own job, handed back, or (when reconciliation
    # had asked for it meanwhile, the same key's queueing lock) the waiting one, this one
    # ended; nothing is left `doing`, holding the store's lock.
    assert await sync_jobs(owner_engine, store.id) in (
        [("todo", job_id)],
        [("aborted", job_id), ("todo", ANY)],
    )
    (cut,) = await fetch(
        owner_engine,
        "SELECT state, imported, cursor FROM syncs WHERE integration_id = :id",
        id=store.id,
    )
    assert cut["cursor"] is not None and 100 <= cut["imported"] < 350, cut
    assert await registered_workers(owner_engine) == 0
    print(f"\nsync cut short: {cut['imported']} of 350 imported, exit 0 in {took:.2f} s")

    woo.stall_seconds = 0
    log = tmp_path / "second.log"
    server = start_serve(env, free_port(), log)
    try:

        async def done() -> bool:
            rows = await fetch(
                owner_engine,
                "SELECT state, imported FROM syncs WHERE integration_id = :id",
                id=store.id,
            )
            return rows[0]["state"] == "done"

        await eventually(done, within=60)
    finally:
        code, _ = await sigterm(server, within=6)
    assert code == 0
    (finished,) = await fetch(
        owner_engine, "SELECT imported FROM syncs WHERE integration_id = :id", id=store.id
    )
    orders = await fetch(
        owner_engine, "SELECT count(*) AS n FROM orders WHERE integration_id = :id", id=store.id
    )
    assert orders[0]["n"] == 350
    # Done, and deleted as successes are; nothing else waits.
    assert [status for status, _ in await sync_jobs(owner_engine, store.id)] in ([], ["aborted"])
    started = [line for line in log_lines(log) if line.get("message") == "sync started"]
    assert started and started[0]["resumed"] is True
    assert finished["imported"] >= 350 - cut["imported"]
