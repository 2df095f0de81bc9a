"""Sign-in abuse limits: failed attempts per account and per client address, counted in a
sliding window.

The counts live in this process's memory: each worker process keeps its own, so with N
workers a client gets at most N times a limit, and a restart forgets them. That bounds
online password guessing well enough without a shared store; a cluster that needs exact
limits puts them in front of the app (proxy) or in a shared store.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from astra.errors import Forbidden, NotAuthenticated, TooManyRequests
from astra.settings import Settings

Clock = Callable[[], float]
# Past this many tracked keys the oldest are forgotten, so a spray of made-up emails
# cannot grow memory without bound.
MAX_TRACKED_KEYS = 100_000


class SlidingWindow:
    """At most `limit` attempts per key within any `window` seconds."""

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        clock: Clock = time.monotonic,
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._attempts: dict[str, deque[float]] = {}

    def _live(self, key: str, now: float) -> deque[float] | None:
        attempts = self._attempts.get(key)
        if attempts is None:
            return None
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        if not attempts:
            del self._attempts[key]
            return None
        return attempts

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None when it may try now."""
        now = self.clock()
        attempts = self._live(key, now)
        if attempts is None or len(attempts) < self.limit:
            return None
        return attempts[-self.limit] + self.window - now

    def record(self, key: str) -> float:
        """Count one attempt now; returns its stamp, for `forgive`."""
        now = self.clock()
        attempts = self._live(key, now)
        if attempts is None:
            attempts = self._attempts[key] = deque()
            while len(self._attempts) > self.max_keys:
                del self._attempts[next(iter(self._attempts))]
        attempts.append(now)
        return now

    def forgive(self, key: str, stamp: float) -> None:
        """Take back one attempt that turned out well."""
        attempts = self._attempts.get(key)
        if attempts is not None and stamp in attempts:
            attempts.remove(stamp)
            if not attempts:
                del self._attempts[key]

    def clear(self, key: str) -> None:
        self._attempts.pop(key, None)


@dataclass(frozen=True, slots=True)
class _Attempt:
    address: str
    address_stamp: float
    account: str | None
    account_stamp: float


class SignInLimits:
    """Failed sign-ins per account (email) and per client address.

    An attempt is counted when it starts, before the password is checked, so concurrent
    guesses cannot slip past a limit while the first ones are still being verified.
    """

    def __init__(
        self,
        *,
        per_account: int,
        per_address: int,
        window_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.accounts = SlidingWindow(limit=per_account, window=window_seconds, clock=clock)
        self.addresses = SlidingWindow(limit=per_address, window=window_seconds, clock=clock)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = time.monotonic) -> SignInLimits:
        return cls(
            per_account=settings.login_max_failures_per_account,
            per_address=settings.login_max_failures_per_address,
            window_seconds=settings.login_window_minutes * 60,
            clock=clock,
        )

    @contextmanager
    def attempt(self, *, address: str, account: str | None = None) -> Iterator[None]:
        """Guard one attempt: TooManyRequests (nothing checked, nothing counted) when over
        a limit. A refusal (401, 403) inside stays counted as a failure; success clears the
        account's failures; any other error (the database is down) is not held against it."""
        attempt = self._begin(address, account)
        try:
            yield
        except (NotAuthenticated, Forbidden):
            raise
        except BaseException:
            self._take_back(attempt)
            raise
        self.addresses.forgive(address, attempt.address_stamp)
        if account is not None:
            self.accounts.clear(account)

    def _begin(self, address: str, account: str | None) -> _Attempt:
        waits = [self.addresses.retry_after(address)]
        if account is not None:
            waits.append(self.accounts.retry_after(account))
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            raise TooManyRequests(
                f"Too many failed sign-in attempts. Try again in {_minutes(wait)}.",
                retry_after=max(1, math.ceil(wait)),
            )
        address_stamp = self.addresses.record(address)
        account_stamp = self.accounts.record(account) if account is not None else 0.0
        return _Attempt(address, address_stamp, account, account_stamp)

    def _take_back(self, attempt: _Attempt) -> None:
        self.addresses.forgive(attempt.address, attempt.address_stamp)
        if attempt.account is not None:
            self.accounts.forgive(attempt.account, attempt.account_stamp)


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
