"""The operator endpoints' fixtures: an app that serves /metrics with a token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TestDatabase, client_for, running

METRICS_TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture(scope="session")
async def metrics_app(test_database: TestDatabase) -> AsyncIterator[FastAPI]:
    settings = test_database.settings.model_copy(update={"metrics_token": METRICS_TOKEN})
    async with running(settings) as application:
        yield application


@pytest.fixture
async def metrics_client(metrics_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(metrics_app) as client:
        yield client
