"""Reliability tests run a real server (`astra serve` in a subprocess) against their own
embedded PostgreSQL, which they may stop: never the suite's shared database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path
from subprocess import CalledProcessError

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from testkit.harness import EmbeddedPostgres

# Each test brings its own database and never touches DATABASE_URL's server, so the
# suite's second run on that server (`make test`) would only repeat it.
own_database_only = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="runs on its own embedded PostgreSQL"
)


@pytest.fixture(autouse=True)
def clean_tables() -> None:
    """These tests bring their own database; the suite's shared one is left alone."""


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    database = EmbeddedPostgres(tmp_path)
    yield database
    with suppress(CalledProcessError):
        database.stop()


@pytest.fixture
async def owner_engine(embedded: EmbeddedPostgres) -> AsyncIterator[AsyncEngine]:
    engine = embedded.engine()
    yield engine
    await engine.dispose()
