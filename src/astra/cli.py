"""`astra serve | worker | sync | migrate | user create | db stop`."""

from __future__ import annotations

import asyncio
import getpass
import logging.config
import sys
import uuid
from typing import Annotated

import typer
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from astra import serving
from astra.auth.passwords import MIN_PASSWORD_LENGTH, hash_password
from astra.db import migrate
from astra.db.urls import owner_url
from astra.logs import LOG_CONFIG
from astra.settings import Settings

# Plain output, as a terminal or a log collector reads it; a traceback never prints local
# variables (settings hold passwords).
cli = typer.Typer(
    name="astra",
    help="Astra Integrations",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
users = typer.Typer(help="manage accounts", no_args_is_help=True)
cli.add_typer(users, name="user")
database = typer.Typer(help="the embedded PostgreSQL", no_args_is_help=True)
cli.add_typer(database, name="db")


ROLES = ("admin", "seller")


def _role(value: str) -> str:
    # argparse's wording, which scripts and tests already match on.
    if value not in ROLES:
        raise typer.BadParameter(
            f"invalid choice: {value!r} (choose from {', '.join(map(repr, ROLES))})"
        )
    return value


@cli.command(help="migrate, then serve HTTP (and run a queue worker in each process)")
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(min=1)] = 1,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="run a queue worker in each process")
    ] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="also serve /metrics on 127.0.0.1:N [ASTRA_METRICS_PORT]"
        ),
    ] = None,
) -> None:
    settings = Settings()
    raise typer.Exit(
        serving.serve(
            settings,
            host or settings.host,
            port or settings.port,
            workers,
            worker=worker,
            metrics_port=metrics_port,
        )
    )


@cli.command(help="run queue workers alone (no HTTP), until SIGINT or SIGTERM")
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="jobs run at once [ASTRA_WORKER_CONCURRENCY]")
    ] = None,
) -> None:
    from astra.sync.worker import run_alone

    settings = Settings()
    logging.config.dictConfig(LOG_CONFIG)
    migrate.upgrade(settings)
    asyncio.run(run_alone(settings, concurrency=concurrency or settings.worker_concurrency))


@cli.command(help="run one store's sync here, with a progress bar; exit 1 when it fails")
def sync(
    integration_id: Annotated[uuid.UUID, typer.Argument(help="the integration's id")],
) -> None:
    settings = Settings()
    migrate.upgrade(settings)
    raise typer.Exit(asyncio.run(_sync(settings, integration_id)))


async def _sync(settings: Settings, integration_id: uuid.UUID) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from astra.db.session import Database
    from astra.db.urls import app_url
    from astra.errors import NotFound
    from astra.sync.engine import run_sync
    from astra.sync.state import SyncState

    database = Database(app_url(settings), pool_size=2, max_overflow=0)
    columns = (TextColumn("Importing orders"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("sync", total=None)

            async def progress(state: SyncState) -> None:
                bar.update(task, completed=state.imported, total=state.total)

            result = await run_sync(database, settings, integration_id, progress=progress)
    except NotFound as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await database.dispose()
    if result.state == "running":
        print("error: a sync of this store is running already.", file=sys.stderr)
        return 1
    if result.state != "done":
        print(f"error: the sync failed: {result.error}", file=sys.stderr)
        return 1
    print(f"Imported {result.imported} orders; {result.missed_by_webhook} had not come by webhook.")
    return 0


@cli.command(name="migrate", help="apply database migrations and exit")
def migrate_database() -> None:
    migrate.upgrade(Settings())
    print("Database is up to date.")


@users.command(help="create an account (password from stdin, or prompted for)")
def create(
    email: str,
    role: Annotated[str, typer.Option(metavar="[admin|seller]", callback=_role)] = "seller",
) -> None:
    raise typer.Exit(_create_user(Settings(), email, role))


@database.command(help="stop the embedded PostgreSQL of the data dir")
def stop() -> None:
    raise typer.Exit(serving.stop_database(Settings()))


def main(argv: list[str] | None = None) -> int:
    try:
        cli(args=argv, prog_name="astra")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise SystemExit("Passwords do not match.")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _create_user(settings: Settings, email: str, role: str) -> int:
    email = email.strip().lower()
    if "@" not in email:
        print(f"error: {email!r} is not an email address.", file=sys.stderr)
        return 1
    password = _read_password()
    if len(password) < MIN_PASSWORD_LENGTH:
        print(
            f"error: the password needs at least {MIN_PASSWORD_LENGTH} characters.", file=sys.stderr
        )
        return 1
    migrate.upgrade(settings)

    async def insert() -> None:
        engine = create_async_engine(owner_url(settings))
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text("SELECT public.app_create_user(:email, :hash, :role)"),
                    {"email": email, "hash": hash_password(password), "role": role},
                )
        finally:
            await engine.dispose()

    try:
        asyncio.run(insert())
    except IntegrityError:
        print(f"error: an account for {email} already exists.", file=sys.stderr)
        return 1
    print(f"Created {role} {email}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
