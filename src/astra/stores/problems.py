"""What can go wrong when Astra calls a store, in words a seller can act on."""

from __future__ import annotations

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
    """

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem: Problem = problem
        self.message = message

    def __repr__(self) -> str:
        return f"StoreProblem({self.problem!r}, {self.message!r})"
