from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable

import pytest

from testkit.simulators.server import StoreServer

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
async def store_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[StoreServer]:
    async with StoreServer.running(tmp_path_factory.mktemp("stores")) as server:
        yield server


@pytest.fixture
def fresh_domain() -> Callable[[str], str]:
    """A domain no other test's store uses: the server is shared by the whole session."""
    return lambda pattern: pattern.format(next(_numbers))
