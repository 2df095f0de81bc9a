"""The answers the outage test saw, each pinned on its own, without stopping a server:
what PostgreSQL says while it stops or starts is a 503 with Retry-After, never a 500."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc

from astra.http import DATABASE_DOWN, install_error_handlers
from astra.webhooks.service import DeliveryFailed

pytestmark = pytest.mark.reliability


class ServerSaid(Exception):
    """Stands in for asyncpg's error as SQLAlchemy wraps it: `orig` carries the SQLSTATE."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/")
    async def fail() -> None:
        raise error

    return app


async def answer(error: Exception) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_raising(error))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/")


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        # Raised while connecting, so nothing was invalidated: only the SQLSTATE tells.
        ("57P03", "the database system is shutting down"),
        ("57P03", "the database system is starting up"),
        ("57P01", "terminating connection due to administrator command"),
        ("08006", "connection failure"),
        ("53300", "sorry, too many clients already"),
    ],
)
async def test_postgresql_refusing_connections_is_a_503_with_retry_after(
    sqlstate: str, message: str
) -> None:
    response = await answer(sa_exc.DBAPIError("connect", None, ServerSaid(sqlstate, message)))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"detail": DATABASE_DOWN}


async def test_other_database_errors_stay_a_plain_500_without_database_text() -> None:
    error = ServerSaid("42P01", 'relation "secret_table" does not exist')
    response = await answer(sa_exc.DBAPIError("SELECT", None, error))
    assert response.status_code == 500
    assert "secret_table" not in response.text
    assert "retry-after" not in response.headers


async def test_a_webhook_delivery_rolled_back_says_when_to_retry() -> None:
    response = await answer(
        DeliveryFailed("The delivery could not be stored; send it again later.")
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
