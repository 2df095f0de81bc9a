"""Shared fixtures: a real PostgreSQL database built by the migrations, the app, and one
signed-in client per kind of caller (anonymous, owner seller, other seller, admin).

DATABASE_URL set: tests create their own database on that server. Unset: they start an
embedded server in a temporary data dir, exactly as `make run` would.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from astra.app import create_app
from astra.db import migrate
from astra.db.embedded import embedded_database_url, stop_embedded
from astra.settings import Settings
from testkit.simulators.server import StoreServer

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False

    settings: Settings
    owner_url: URL


def _create_database(server_url: URL, name: str) -> None:
    import asyncio

    async def run() -> None:
        engine = create_async_engine(
            server_url.set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture(scope="session")
def test_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabase]:
    data_dir: Path = tmp_path_factory.mktemp("astra-data")
    embedded = os.environ.get("DATABASE_URL") is None
    raw = embedded_database_url(data_dir) if embedded else os.environ["DATABASE_URL"]
    server_url = make_url(raw).set(drivername="postgresql+asyncpg")
    name = f"astra_test_{uuid.uuid4().hex[:10]}"
    _create_database(server_url, name)
    database_url = server_url.set(database=name)
    settings = Settings(
        database_url=database_url.render_as_string(hide_password=False),
        data_dir=data_dir,
        # The names the tests' ASGI clients use (base_url=...), and the live servers' own.
        allowed_hosts=[
            "testserver",
            "test",
            "astra.internal",
            "internal-host",
            "127.0.0.1",
            # Where the simulated stores deliver in tests/stores (to the in-process app).
            "astra.example.com",
        ],
    )
    migrate.upgrade(settings)
    yield TestDatabase(settings=settings, owner_url=database_url)
    if embedded:
        stop_embedded(data_dir)


@pytest.fixture(scope="session")
async def owner_engine(test_database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(test_database.owner_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def password_hash() -> str:
    """An argon2id hash with minimal cost parameters: verification reads the parameters from
    the hash itself, so sign-in runs the same code, in a millisecond instead of ~100 ms."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)


@pytest.fixture(autouse=True)
async def clean_tables(owner_engine: AsyncEngine) -> None:
    """Each test starts from empty tables (migrated schema, no rows)."""
    async with owner_engine.begin() as connection:
        await connection.execute(text("TRUNCATE public.users, public.sign_in_attempts CASCADE"))


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan entered (pool open), as a server would run it."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def app(test_database: TestDatabase) -> AsyncIterator[FastAPI]:
    async with running(test_database.settings) as application:
        yield application


@dataclass
class Account:
    id: uuid.UUID
    email: str
    role: str
    client: httpx.AsyncClient


async def make_user(
    owner_engine: AsyncEngine, email: str, role: str, password_hash: str
) -> uuid.UUID:
    async with owner_engine.begin() as connection:
        user_id = (
            await connection.execute(
                text("SELECT public.app_create_user(:email, :hash, :role)"),
                {"email": email, "hash": password_hash, "role": role},
            )
        ).scalar_one()
    assert isinstance(user_id, uuid.UUID)
    return user_id


def client_for(app: object) -> httpx.AsyncClient:
    # An https public URL makes the session cookie Secure: such an app is reached over https.
    settings = getattr(getattr(app, "state", None), "settings", None)
    scheme = "https" if settings is not None and settings.secure_cookies else "http"
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url=f"{scheme}://testserver",
    )


async def signed_in(
    app: object, owner_engine: AsyncEngine, email: str, role: str, password_hash: str
) -> Account:
    user_id = await make_user(owner_engine, email, role, password_hash)
    client = client_for(app)
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return Account(id=user_id, email=email, role=role, client=client)


@pytest.fixture
async def anonymous(app: object) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        yield client


@pytest.fixture
async def seller(
    app: object, owner_engine: AsyncEngine, password_hash: str
) -> AsyncIterator[Account]:
    account = await signed_in(app, owner_engine, "seller@example.com", "seller", password_hash)
    yield account
    await account.client.aclose()


@pytest.fixture
async def other_seller(
    app: object, owner_engine: AsyncEngine, password_hash: str
) -> AsyncIterator[Account]:
    account = await signed_in(app, owner_engine, "other@example.com", "seller", password_hash)
    yield account
    await account.client.aclose()


@pytest.fixture
async def admin(
    app: object, owner_engine: AsyncEngine, password_hash: str
) -> AsyncIterator[Account]:
    account = await signed_in(app, owner_engine, "admin@example.com", "admin", password_hash)
    yield account
    await account.client.aclose()


@pytest.fixture(scope="session")
async def store_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[StoreServer]:
    """Simulated Shopify and WooCommerce stores over real HTTPS on 127.0.0.1, one server for
    the session; each test adds its own stores under fresh domains."""
    async with StoreServer.running(tmp_path_factory.mktemp("stores")) as server:
        yield server


_store_numbers = itertools.count(1)


@pytest.fixture
def fresh_domain() -> Callable[[str], str]:
    """A domain no other test's store uses: the store server is shared by the session."""
    return lambda pattern: pattern.format(next(_store_numbers))
