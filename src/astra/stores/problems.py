"""What can go wrong when Astra calls a store, in words a seller can act on."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, get_args

# `no_credentials` belongs to the caller (nothing to call the store with); every other
# problem comes from calling the store.
Problem = Literal[
    "invalid_credentials",
    "wrong_store",
    "missing_scope",
    "store_unavailable",
    "unreachable",
    "timeout",
    "refused_address",
]
PROBLEMS: frozenset[str] = frozenset(get_args(Problem))


class StoreProblem(Exception):
    """A call to a store failed in a way the seller can understand.

    `message` is one sentence (or two) saying what happened and what to do. It never holds
    a secret, a token or anything the store sent back in its body: stores are not trusted
    to write what we show, and bodies can echo credentials.

    `transient` says the same call may well work a little later (the store was busy, slow
    or briefly away); `retry_after`, how many seconds the store itself asked to wait.
    """

    def __init__(
        self,
        problem: Problem,
        message: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.problem: Problem = problem
        self.message = message
        self.transient = transient or retry_after is not None
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"StoreProblem({self.problem!r}, {self.message!r})"


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds, or an HTTP date); None when
    absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)
