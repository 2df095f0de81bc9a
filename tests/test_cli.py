"""The real `astra` command in a subprocess, against the test database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from subprocess import CalledProcessError

import httpx
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.db import migrate
from astra.db.embedded import embedded_running
from testkit.harness import AppServer, EmbeddedPostgres, serving
from tests.conftest import PASSWORD, TestDatabase, make_user
from tests.reliability.conftest import own_database_only

NEW_PASSWORD = "a long enough password"


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


async def astra(test_database: TestDatabase, *args: str, stdin: str = "") -> Run:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASTRA_")}
    env["DATABASE_URL"] = str(test_database.settings.database_url)
    env["ASTRA_DATA_DIR"] = str(test_database.settings.data_dir)
    return await _run(env, args, stdin)


async def astra_in(data_dir: Path, *args: str) -> Run:
    """The command on the embedded PostgreSQL of `data_dir` (DATABASE_URL unset)."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    return await _run(env | {"ASTRA_DATA_DIR": str(data_dir)}, args, "")


async def _run(env: dict[str, str], args: tuple[str, ...], stdin: str) -> Run:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "astra.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


async def users(owner_engine: AsyncEngine) -> list[tuple[str, str]]:
    async with owner_engine.connect() as connection:
        result = await connection.execute(text("SELECT email, role FROM public.users"))
        return sorted((row.email, row.role) for row in result)


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def test_user_create_reads_the_password_from_stdin(
    test_database: TestDatabase, anonymous: httpx.AsyncClient, owner_engine: AsyncEngine
) -> None:
    run = await astra(
        test_database, "user", "create", "X@Example.com", "--role", "seller",
        stdin=NEW_PASSWORD + "\n",
    )  # fmt: skip

    assert (run.code, run.stderr) == (0, "")
    assert run.stdout.strip() == "Created seller x@example.com."
    assert await users(owner_engine) == [("x@example.com", "seller")]
    response = await login(anonymous, "x@example.com", NEW_PASSWORD)
    assert response.status_code == 200
    assert response.json()["role"] == "seller"
    assert (await anonymous.get("/api/auth/me")).json()["email"] == "x@example.com"


async def test_user_create_makes_an_admin(
    test_database: TestDatabase, anonymous: httpx.AsyncClient
) -> None:
    run = await astra(
        test_database, "user", "create", "boss@example.com", "--role", "admin",
        stdin=NEW_PASSWORD,
    )  # fmt: skip

    assert run.code == 0, run.stderr
    response = await login(anonymous, "boss@example.com", NEW_PASSWORD)
    assert (response.status_code, response.json()["role"]) == (200, "admin")
    # An admin sees the admin view: everyone's integrations, including an empty list.
    assert (await anonymous.get("/api/integrations")).json() == {"items": [], "next_cursor": None}


async def test_duplicate_email_is_a_clear_error(
    test_database: TestDatabase, anonymous: httpx.AsyncClient, owner_engine: AsyncEngine
) -> None:
    first = await astra(
        test_database, "user", "create", "x@example.com", "--role", "seller", stdin=NEW_PASSWORD
    )
    assert first.code == 0, first.stderr

    again = await astra(
        test_database, "user", "create", "X@EXAMPLE.com", "--role", "admin",
        stdin="a different password",
    )  # fmt: skip

    assert again.code == 1
    assert again.stderr.strip() == "error: an account for x@example.com already exists."
    assert "Traceback" not in again.stderr + again.stdout
    # The existing account is untouched: same role, same password.
    assert await users(owner_engine) == [("x@example.com", "seller")]
    assert (await login(anonymous, "x@example.com", "a different password")).status_code == 401
    assert (await login(anonymous, "x@example.com", NEW_PASSWORD)).status_code == 200


async def test_too_short_password_is_refused(
    test_database: TestDatabase, owner_engine: AsyncEngine
) -> None:
    for password in ("short", "", "1234567"):
        run = await astra(
            test_database, "user", "create", "x@example.com", "--role", "seller", stdin=password
        )
        assert run.code == 1, password
        assert "at least 8 characters" in run.stderr
        assert "Traceback" not in run.stderr
    assert await users(owner_engine) == []


async def test_invalid_email_and_role_are_refused(
    test_database: TestDatabase, owner_engine: AsyncEngine
) -> None:
    run = await astra(
        test_database, "user", "create", "not-an-email", "--role", "seller", stdin=NEW_PASSWORD
    )
    assert run.code == 1
    assert "is not an email address" in run.stderr
    run = await astra(
        test_database, "user", "create", "x@example.com", "--role", "owner", stdin=NEW_PASSWORD
    )
    assert run.code == 2
    assert "invalid choice" in run.stderr
    assert await users(owner_engine) == []


async def test_migrate_is_idempotent(
    test_database: TestDatabase,
    anonymous: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    password_hash: str,
) -> None:
    await make_user(owner_engine, "x@example.com", "seller", password_hash)
    head = ScriptDirectory.from_config(
        migrate.alembic_config(test_database.settings)
    ).get_current_head()

    for _ in range(2):
        run = await astra(test_database, "migrate")
        assert run.code == 0, run.stderr
        assert run.stdout.strip() == "Database is up to date."

    async with owner_engine.connect() as connection:
        assert await connection.scalar(text("SELECT version_num FROM alembic_version")) == head
    assert await users(owner_engine) == [("x@example.com", "seller")]
    # The running app still connects as its runtime role and signs people in.
    assert (await login(anonymous, "x@example.com", PASSWORD)).status_code == 200


# --- `astra serve` and the embedded PostgreSQL ------------------------------------------


def interrupt(server: AppServer) -> str:
    """Ctrl+C, as a terminal sends it; the whole output once the command has exited."""
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=60) == 0, server.log_text()
    return server.log_text()


@own_database_only
def test_serve_stops_the_embedded_postgresql_it_started(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        assert embedded_running(tmp_path)
        output = interrupt(server)

    assert "Stopped the embedded PostgreSQL." in output
    assert not embedded_running(tmp_path)
    assert "Traceback" not in output


@own_database_only
async def test_serve_leaves_a_postgresql_it_did_not_start_and_says_how_to_stop_it(
    tmp_path: Path,
) -> None:
    database = EmbeddedPostgres(tmp_path)
    try:
        with serving(tmp_path) as server:
            output = interrupt(server)

        assert "was already running before astra serve, so it keeps running" in output
        assert "Stop it with: astra db stop" in output
        assert embedded_running(tmp_path)
        stopped = await astra_in(tmp_path, "db", "stop")
        assert (stopped.code, stopped.stdout.strip()) == (0, "Stopped the embedded PostgreSQL.")
        assert not embedded_running(tmp_path)
        again = await astra_in(tmp_path, "db", "stop")
        assert (again.code, again.stdout.strip()) == (0, "The embedded PostgreSQL is not running.")
    finally:
        with suppress(CalledProcessError):
            database.stop()
