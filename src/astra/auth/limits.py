"""Sign-in abuse limits, shared by every worker and host through PostgreSQL.

The rule, over a sliding window (`ASTRA_LOGIN_WINDOW_MINUTES`, 15):

- Per account (the email) and client address: `ASTRA_LOGIN_MAX_FAILURES_PER_ACCOUNT` (10)
  failures, then 429.
- Per client address, over any emails and refused set-up links:
  `ASTRA_LOGIN_MAX_FAILURES_PER_ADDRESS` (50) failures, then 429.
  A 429 carries `Retry-After`, and no password is checked.
- Per account over all addresses: from `ASTRA_LOGIN_SLOWDOWN_AFTER_FAILURES` (10) failures
  on, each attempt waits 0.25 s, doubled for every further failure, at most
  `ASTRA_LOGIN_MAX_DELAY_SECONDS` (3 s), before its password is checked. Everyone waits,
  the owner too, but nobody is refused: addresses can slow an account down, never lock its
  owner out.

An attempt is counted, in its own committed transaction, when it starts: concurrent
guesses on any worker see it before their passwords are checked. A refusal (401, 403)
stays counted; a successful sign-in clears that account's failures from that address in
the request's own transaction (so with the new session); any other error (an outage) is
taken back. The table keeps SHA-256 of the lowercased email, never the email.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from sqlalchemy import text

from astra.db.session import Database, Transaction, begin
from astra.errors import Forbidden, NotAuthenticated, TooManyRequests
from astra.settings import Settings

BEGIN = text(
    "SELECT attempt_id, retry_after, account_failures FROM public.app_sign_in_begin("
    ":account_hash, :address, :window, :per_account, :per_address, :count_up_to)"
)
CLEAR = text("SELECT public.app_sign_in_clear(:account_hash, :address)")
FORGET = text("SELECT public.app_sign_in_forget(:attempt_id)")

FIRST_DELAY_SECONDS = 0.25
# Failures past the threshold worth counting: 0.25 s doubled this often outgrows any cap.
DOUBLINGS_TO_ANY_CAP = 32
# An address is at most 45 characters; the cap keeps an odd forwarded value from failing.
MAX_ADDRESS_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    # Seconds this attempt waits before its password is checked (the account's slow-down).
    delay: float


def account_hash(email: str) -> bytes:
    return hashlib.sha256(email.lower().encode()).digest()


class SignInLimits:
    def __init__(
        self,
        database: Database,
        *,
        per_account: int,
        per_address: int,
        window_seconds: int,
        slowdown_after: int,
        max_delay: float,
    ) -> None:
        self.database = database
        self.per_account = per_account
        self.per_address = per_address
        self.window_seconds = window_seconds
        self.slowdown_after = slowdown_after
        self.max_delay = max_delay

    @classmethod
    def from_settings(cls, settings: Settings, database: Database) -> SignInLimits:
        return cls(
            database,
            per_account=settings.login_max_failures_per_account,
            per_address=settings.login_max_failures_per_address,
            window_seconds=settings.login_window_minutes * 60,
            slowdown_after=settings.login_slowdown_after_failures,
            max_delay=settings.login_max_delay_seconds,
        )

    def delay(self, account_failures: int) -> float:
        """Seconds an attempt waits when its account has this many failures in the window."""
        if account_failures < self.slowdown_after:
            return 0.0
        doublings = min(account_failures - self.slowdown_after, DOUBLINGS_TO_ANY_CAP)
        return min(self.max_delay, FIRST_DELAY_SECONDS * 2.0**doublings)

    async def begin(self, *, address: str, account: str | None) -> Attempt:
        """Count one attempt now, or raise TooManyRequests (nothing counted) over a limit."""
        async with begin(self.database) as own:
            row = (
                await own.execute(
                    BEGIN,
                    {
                        "account_hash": None if account is None else account_hash(account),
                        "address": _address(address),
                        "window": self.window_seconds,
                        "per_account": self.per_account,
                        "per_address": self.per_address,
                        "count_up_to": self.slowdown_after + DOUBLINGS_TO_ANY_CAP,
                    },
                )
            ).one()
        if row.retry_after is not None:
            raise TooManyRequests(
                f"Too many failed sign-in attempts. Try again in {_minutes(row.retry_after)}.",
                retry_after=max(1, math.ceil(row.retry_after)),
            )
        return Attempt(id=row.attempt_id, delay=self.delay(row.account_failures))

    @asynccontextmanager
    async def attempt(
        self, db: Transaction, *, address: str, account: str | None = None
    ) -> AsyncIterator[None]:
        """Guard one attempt, whose check runs in the request's transaction `db`."""
        attempt = await self.begin(address=address, account=account)
        await anyio.sleep(attempt.delay)
        try:
            yield
        except (NotAuthenticated, Forbidden):
            raise
        except Exception:
            # The request's connection goes back first, so a sign-in never holds two of the
            # pool's. (A cancelled attempt, a BaseException, may have been checked: it counts.)
            await db.end(commit=False)
            async with begin(self.database) as own:
                await own.execute(FORGET, {"attempt_id": attempt.id})
            raise
        if account is None:
            await db.execute(FORGET, {"attempt_id": attempt.id})
        else:
            await db.execute(
                CLEAR,
                {"account_hash": account_hash(account), "address": _address(address)},
            )


def _address(address: str) -> str:
    return address[:MAX_ADDRESS_LENGTH]


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
