"""Sign-in abuse limits: failed attempts per account and per client address (429 with
Retry-After, the password not checked), and equal timing for known and unknown emails."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.auth import passwords, service
from astra.auth.limits import SignInLimits, SlidingWindow
from astra.auth.passwords import hash_password
from astra.settings import Settings
from tests.auth.test_auth_api import sessions_of, setup_body
from tests.conftest import PASSWORD, TestDatabase, make_user, running

WINDOW = 15 * 60
EMAIL = "shopkeeper@example.com"
SETUP_TOKEN = "one-time-setup-token-for-tests"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Limited:
    app: FastAPI
    clock: FakeClock

    def client(self, address: str = "127.0.0.1") -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(address, 40000)),
            base_url="http://testserver",
        )


@pytest.fixture
async def limited(
    test_database: TestDatabase, password_hash: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Limited]:
    """The app with its default limits, on a clock the test moves. Unknown emails verify
    against a cheap hash here (timing has its own test), so fifty guesses take no time."""
    monkeypatch.setattr(passwords, "_DUMMY_HASH", password_hash)
    settings = test_database.settings.model_copy(update={"setup_token": SETUP_TOKEN})
    async with running(settings) as application:
        clock = FakeClock()
        application.state.sign_in_limits = SignInLimits.from_settings(settings, clock=clock)
        yield Limited(application, clock)


@pytest.fixture
async def user_id(owner_engine: AsyncEngine, password_hash: str) -> uuid.UUID:
    return await make_user(owner_engine, EMAIL, "seller", password_hash)


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Passwords the service asked argon2 to verify."""
    seen: list[str] = []
    real = service.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        seen.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(service, "verify_password", counting)
    return seen


async def login(
    client: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def fail(client: httpx.AsyncClient, times: int, email: str = EMAIL) -> None:
    for _ in range(times):
        response = await login(client, email, "wrong password")
        assert response.status_code == 401, response.text


def assert_limited(response: httpx.Response, *, at_most: int = WINDOW) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= at_most
    assert response.json()["detail"].startswith("Too many failed sign-in attempts. Try again in")
    assert "set-cookie" not in response.headers


def test_defaults_are_ten_per_account_and_fifty_per_address_in_fifteen_minutes() -> None:
    settings = Settings()
    assert (
        settings.login_max_failures_per_account,
        settings.login_max_failures_per_address,
        settings.login_window_minutes,
    ) == (10, 50, 15)


# --- per account -----------------------------------------------------------------------


async def test_the_eleventh_failure_for_an_account_is_429_without_checking_the_password(
    limited: Limited, user_id: uuid.UUID, owner_engine: AsyncEngine, verifications: list[str]
) -> None:
    async with limited.client() as client:
        await fail(client, 10)
        assert len(verifications) == 10, "the spy must see the service's password checks"
        verifications.clear()
        limited.clock.advance(60)

        wrong = await login(client, password="wrong password")
        right = await login(client)

    assert_limited(wrong)
    assert int(wrong.headers["retry-after"]) == WINDOW - 60
    assert wrong.json()["detail"] == "Too many failed sign-in attempts. Try again in 14 minutes."
    assert_limited(right)
    assert verifications == []
    assert await sessions_of(owner_engine, user_id) == []


async def test_the_account_limit_holds_across_addresses(
    limited: Limited, user_id: uuid.UUID
) -> None:
    for n in range(10):
        async with limited.client(f"198.51.100.{n + 1}") as client:
            await fail(client, 1)
    async with limited.client("203.0.113.50") as fresh:
        assert_limited(await login(fresh))
        # Only that account: another email from the same address is refused as usual.
        response = await login(fresh, "someone-else@example.com")
        assert response.status_code == 401


async def test_unknown_emails_are_limited_like_known_ones(limited: Limited) -> None:
    """Otherwise a 429 (or its absence) would tell which emails have accounts."""
    async with limited.client() as client:
        await fail(client, 10, "nobody@example.com")
        assert_limited(await login(client, "nobody@example.com"))


async def test_the_window_slides(limited: Limited, user_id: uuid.UUID) -> None:
    async with limited.client() as client:
        await fail(client, 5)
        limited.clock.advance(10 * 60)
        await fail(client, 5)
        assert_limited(await login(client))

        # The first five expire 15 minutes after they happened; the last five still count.
        limited.clock.advance(5 * 60)
        await fail(client, 5)
        response = await login(client, password="wrong password")
        assert_limited(response)
        assert int(response.headers["retry-after"]) == 10 * 60

        limited.clock.advance(WINDOW)
        assert (await login(client)).status_code == 200


async def test_a_successful_sign_in_clears_the_accounts_failures(
    limited: Limited, user_id: uuid.UUID
) -> None:
    async with limited.client() as client:
        await fail(client, 9)
        assert (await login(client)).status_code == 200
        await fail(client, 10)
        assert_limited(await login(client))


async def test_an_email_is_counted_as_the_api_normalises_it(
    limited: Limited, user_id: uuid.UUID
) -> None:
    async with limited.client() as client:
        await fail(client, 5, EMAIL.upper())
        await fail(client, 5, f"  {EMAIL}")
        assert_limited(await login(client))


# --- per address -----------------------------------------------------------------------


async def test_an_address_gets_fifty_failures_over_any_accounts(
    limited: Limited, user_id: uuid.UUID, verifications: list[str]
) -> None:
    async with limited.client() as client:
        for n in range(50):
            await fail(client, 1, f"guess{n}@example.com")
        verifications.clear()
        response = await login(client)
    assert_limited(response)
    assert verifications == []

    async with limited.client("203.0.113.7") as other_address:
        assert (await login(other_address)).status_code == 200


async def test_successful_sign_ins_do_not_count_against_the_address(
    limited: Limited, user_id: uuid.UUID
) -> None:
    async with limited.client() as client:
        for _ in range(60):
            assert (await login(client)).status_code == 200


async def test_refused_set_up_links_are_limited_per_address(limited: Limited) -> None:
    async with limited.client() as client:
        for _ in range(50):
            response = await client.post("/api/auth/setup", json=setup_body("wrong-token"))
            assert response.status_code == 403
        assert_limited(await client.post("/api/auth/setup", json=setup_body(SETUP_TOKEN)))
    async with limited.client("203.0.113.7") as other_address:
        response = await other_address.post("/api/auth/setup", json=setup_body(SETUP_TOKEN))
        assert response.status_code == 201


async def test_sign_in_failures_and_set_up_failures_share_the_address_budget(
    limited: Limited, user_id: uuid.UUID
) -> None:
    async with limited.client() as client:
        await fail(client, 9)
        for _ in range(41):
            refused = await client.post("/api/auth/setup", json=setup_body("wrong-token"))
            assert refused.status_code == 403
        assert_limited(await client.post("/api/auth/setup", json=setup_body(SETUP_TOKEN)))
        assert_limited(await login(client))


async def test_invalid_input_is_not_an_attempt(limited: Limited, user_id: uuid.UUID) -> None:
    async with limited.client() as client:
        for _ in range(60):
            response = await client.post("/api/auth/login", json={"email": EMAIL})
            assert response.status_code == 422
        assert (await login(client)).status_code == 200


# --- the limiter on its own ------------------------------------------------------------


def test_sliding_window_counts_per_key_and_forgets_old_attempts() -> None:
    clock = FakeClock()
    window = SlidingWindow(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert window.retry_after("a") is None
        window.record("a")
        clock.advance(10)
    assert window.retry_after("a") == 30
    assert window.retry_after("b") is None
    clock.advance(30)
    assert window.retry_after("a") is None


def test_sliding_window_forgives_one_attempt_and_clears_all() -> None:
    clock = FakeClock()
    window = SlidingWindow(limit=2, window=60, clock=clock)
    stamp = window.record("a")
    clock.advance(1)
    window.record("a")
    assert window.retry_after("a") is not None
    window.forgive("a", stamp)
    assert window.retry_after("a") is None
    window.record("a")
    window.clear("a")
    assert window.retry_after("a") is None


def test_sliding_window_memory_is_bounded() -> None:
    window = SlidingWindow(limit=1, window=60, clock=FakeClock(), max_keys=100)
    for n in range(1000):
        window.record(f"key{n}")
    assert len(window._attempts) == 100
    assert window.retry_after("key999") is not None
    assert window.retry_after("key0") is None


def test_an_error_that_is_not_a_refusal_is_not_held_against_the_caller() -> None:
    limits = SignInLimits(per_account=1, per_address=1, window_seconds=60, clock=FakeClock())
    with pytest.raises(OSError, match="went away"), limits.attempt(address="a", account="x"):
        raise OSError("the database went away")
    with limits.attempt(address="a", account="x"):
        pass


# --- timing ----------------------------------------------------------------------------


async def test_unknown_and_known_emails_fail_in_the_same_time(
    test_database: TestDatabase, owner_engine: AsyncEngine
) -> None:
    """Real argon2 cost: an unknown email verifies against a dummy hash of the same cost,
    so the response time does not tell which emails have accounts."""
    await make_user(owner_engine, EMAIL, "seller", hash_password(PASSWORD))
    async with running(test_database.settings) as application:
        application.state.sign_in_limits = SignInLimits(
            per_account=1000, per_address=1000, window_seconds=WINDOW
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://testserver"
        ) as client:
            known: list[float] = []
            unknown: list[float] = []
            await login(client, "warm-up@example.com", "wrong password")
            for _ in range(12):
                for email, times in ((EMAIL, known), ("nobody@example.com", unknown)):
                    started = time.perf_counter()
                    response = await login(client, email, "wrong password")
                    times.append(time.perf_counter() - started)
                    assert response.status_code == 401

    known_ms, unknown_ms = statistics.median(known) * 1000, statistics.median(unknown) * 1000
    ratio = known_ms / unknown_ms
    print(
        f"\nfailed sign-in, median of 12: known email {known_ms:.0f} ms, unknown {unknown_ms:.0f} ms"
    )
    assert 0.67 < ratio < 1.5, (known_ms, unknown_ms)
