"""A real `astra serve` on the suite's database, for the attacks that need the real server
(its HTTP parser, its proxy settings), not the app in-process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from testkit.harness import AppServer, serving
from tests.conftest import TestDatabase


@contextmanager
def serving_test_database(test_database: TestDatabase, **env: str) -> Iterator[AppServer]:
    """`astra serve` (one worker, 127.0.0.1) on the suite's database, with `env` set."""
    database = {"DATABASE_URL": str(test_database.settings.database_url)}
    with serving(test_database.settings.data_dir, env=database | env) as server:
        yield server
