"""Hostile clients against a live `astra serve`, sent as the attack review sent them.

Without signing in: a huge body to the sign-in route (declared in Content-Length, then
chunked with no length at all), a huge header, and uploads cut off halfway. Each attack
runs while small requests are timed beside it and the worker's memory is sampled. Every
attack is bounded: at most MAX_SENT bytes go out per connection, and only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import psutil
import pytest

from testkit.harness import AppServer
from testkit.processes import HOST
from tests.conftest import TestDatabase
from tests.security.conftest import serving_test_database

MAX_SENT = 50 * 1024 * 1024
PIECE = 64 * 1024
ROUNDS = 5
# On 2 shared cores, with the client in the same box: generous, and still far below the
# seconds an uncapped parser or a body read into memory takes.
REFUSED_WITHIN_S = 1.0
PROBE_WITHIN_S = 0.5
RSS_GROWTH_LIMIT_MB = 20.0
CHUNKED_PIECE = b"%x\r\n%s\r\n" % (PIECE, b"a" * PIECE)


@pytest.fixture(scope="module")
def server(test_database: TestDatabase) -> Iterator[AppServer]:
    with serving_test_database(test_database) as running:
        yield running


@dataclass
class Refusal:
    status: int | None
    seconds: float
    sent: int


class RawConnection(asyncio.Protocol):
    """A client connection that keeps what the server answered even when the server
    then resets it (asyncio's streams would raise the reset instead of the answer)."""

    def __init__(self) -> None:
        self.answer = bytearray()
        self.answered_at: float | None = None
        self.answered = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.answer += data
        self._answered()

    def connection_lost(self, exc: Exception | None) -> None:
        self._answered()

    def _answered(self) -> None:
        self.answered_at = self.answered_at or time.perf_counter()
        self.answered.set()
        self.writable.set()  # nothing more to send

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    @property
    def status(self) -> int | None:
        if not self.answer.startswith(b"HTTP/1.1 "):
            return None
        return int(self.answer.split(b" ", 2)[1])


async def send_until_answered(port: int, head: bytes, piece: bytes) -> Refusal:
    """Send `head`, then `piece` over and over (MAX_SENT bytes at most) until the server
    answers or hangs up; the status, the seconds until the answer and the bytes sent."""
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(RawConnection, HOST, port)
    started = time.perf_counter()
    connection.transport.write(head)
    sent = len(head)
    while sent < MAX_SENT and connection.answered_at is None:
        connection.transport.write(piece)
        sent += len(piece)
        await connection.writable.wait()
        await asyncio.sleep(0)  # let the probes run in this same loop
    async with asyncio.timeout(5):
        await connection.answered.wait()
    connection.transport.close()
    assert connection.answered_at is not None
    return Refusal(connection.status, connection.answered_at - started, sent)


@dataclass
class Probes:
    """Small requests sent one after another while an attack runs, and the worker's RSS."""

    pid: int
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def sample_rss(self) -> float:
        rss = psutil.Process(self.pid).memory_info().rss / 2**20
        self.rss_mb.append(rss)
        return rss

    async def run(self, base_url: str, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                response = await client.get("/api/auth/me")
                self.latencies.append(time.perf_counter() - started)
                self.statuses.append(response.status_code)
                self.sample_rss()
                await asyncio.sleep(0.01)


async def under_probes(
    server: AppServer, attack: Callable[[], Awaitable[Refusal]]
) -> tuple[list[Refusal], Probes, float]:
    """ROUNDS attacks, one after another, with probes running before, during and after;
    returns the refusals, the probes and the RSS before (MB)."""
    probes = Probes(server.worker_pids()[0])
    before = probes.sample_rss()
    stop = asyncio.Event()
    probing = asyncio.create_task(probes.run(server.base_url, stop))
    try:
        await asyncio.sleep(0.2)
        refusals = [await attack() for _ in range(ROUNDS)]
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await probing
    return refusals, probes, before


def report(name: str, refusals: list[Refusal], probes: Probes, before: float) -> None:
    print(
        f"\n{name}: refused in max {max(r.seconds for r in refusals) * 1000:.1f} ms "
        f"({ROUNDS} rounds; by then the client had written up to "
        f"{max(r.sent for r in refusals) / 2**20:.1f} MiB, mostly into socket buffers); "
        f"{len(probes.latencies)} probes meanwhile, median "
        f"{statistics.median(probes.latencies) * 1000:.1f} ms, max "
        f"{max(probes.latencies) * 1000:.1f} ms; worker RSS {before:.1f} MB before, "
        f"peak {max(probes.rss_mb):.1f} MB, after {probes.rss_mb[-1]:.1f} MB"
    )


def assert_held(refusals: list[Refusal], probes: Probes, before: float, status: int) -> None:
    assert [r.status for r in refusals] == [status] * ROUNDS, refusals
    assert max(r.seconds for r in refusals) < REFUSED_WITHIN_S, refusals
    assert set(probes.statuses) == {401}
    assert len(probes.latencies) >= 5
    assert max(probes.latencies) < PROBE_WITHIN_S, probes.latencies
    assert max(probes.rss_mb) - before < RSS_GROWTH_LIMIT_MB, probes.rss_mb


def login_head(framing: bytes) -> bytes:
    return (
        b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n" + framing + b"\r\n\r\n"
    )


async def test_a_400_mb_body_to_sign_in_is_413_from_its_content_length(
    server: AppServer,
) -> None:
    head = login_head(b"Content-Length: 400000000")

    refusals, probes, before = await under_probes(
        server, lambda: send_until_answered(server.port, head, b"a" * PIECE)
    )

    report("400 MB declared body", refusals, probes, before)
    assert_held(refusals, probes, before, 413)


async def test_a_chunked_body_without_a_length_is_413_while_streaming(
    server: AppServer,
) -> None:
    head = login_head(b"Transfer-Encoding: chunked")

    refusals, probes, before = await under_probes(
        server, lambda: send_until_answered(server.port, head, CHUNKED_PIECE)
    )

    report("chunked body", refusals, probes, before)
    assert_held(refusals, probes, before, 413)


async def test_an_endless_header_is_431_and_stalls_nobody(server: AppServer) -> None:
    head = b"GET /api/auth/me HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: "

    refusals, probes, before = await under_probes(
        server, lambda: send_until_answered(server.port, head, b"a" * PIECE)
    )

    report("endless header", refusals, probes, before)
    assert_held(refusals, probes, before, 431)


async def test_requests_within_the_caps_are_served(server: AppServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        # A 16 KiB header is half the cap.
        me = await client.get("/api/auth/me", headers={"X-Filler": "a" * 16 * 1024})
        # A delivery's head and 1 MiB of body arrive in the same reads: never taken for a
        # long head, and within the webhook route's own, larger cap.
        delivery = await client.post(
            f"/api/webhooks/order?id={uuid.uuid4()}",
            content=b"{" + b" " * 2**20 + b"}",
            headers={"Content-Type": "application/json"},
        )
    assert me.status_code == 401
    assert delivery.status_code == 404


async def cut_off_upload(port: int, target: bytes) -> None:
    """Declare 2,000 bytes of body, send 1,000, hang up."""
    _, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n" + b" " * 1000
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the route is reading the body by now
    writer.close()
    await writer.wait_closed()


async def test_a_client_hanging_up_mid_upload_is_one_quiet_line(server: AppServer) -> None:
    start = len(server.log_text())

    await cut_off_upload(server.port, f"/api/webhooks/order?id={uuid.uuid4()}".encode())
    await cut_off_upload(server.port, b"/api/auth/login")

    deadline = time.monotonic() + 10
    while "client disconnected" not in server.log_text()[start:]:
        assert time.monotonic() < deadline, server.log_text()[start:]
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # anything else the two uploads would log
    log = server.log_text()[start:]
    assert log.count("client disconnected before sending the whole body") == 1, log
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        assert (await client.get("/api/auth/me")).status_code == 401
