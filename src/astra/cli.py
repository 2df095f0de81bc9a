"""`astra serve | migrate | user create`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from astra.auth.passwords import MIN_PASSWORD_LENGTH, hash_password
from astra.db import migrate
from astra.db.urls import owner_url
from astra.logs import LOG_CONFIG
from astra.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="astra", description="Astra Integrations")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, then serve HTTP")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)

    commands.add_parser("migrate", help="apply database migrations and exit")

    user = commands.add_parser("user", help="manage accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    create = user_commands.add_parser("create", help="create an account")
    create.add_argument("email")
    create.add_argument("--role", choices=["admin", "seller"], default="seller")

    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "migrate":
        migrate.upgrade(settings)
        print("Database is up to date.")
        return 0
    if args.command == "user":
        return _create_user(settings, args.email, args.role)
    return _serve(settings, args.host or settings.host, args.port or settings.port, args.workers)


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


def _user_count(settings: Settings) -> int:
    async def count() -> int:
        engine = create_async_engine(owner_url(settings))
        try:
            async with engine.connect() as connection:
                return int(
                    (await connection.execute(text("SELECT public.app_user_count()"))).scalar_one()
                )
        finally:
            await engine.dispose()

    return asyncio.run(count())


def _serve(settings: Settings, host: str, port: int, workers: int) -> int:
    import uvicorn

    migrate.upgrade(settings)
    if _user_count(settings) == 0:
        # Like Jupyter's token link: only whoever sees this terminal can claim the first admin.
        token = secrets.token_urlsafe(24)
        os.environ["ASTRA_SETUP_TOKEN"] = token
        base = settings.public_url or f"http://{host}:{port}"
        print(
            "\n  No accounts yet. Create the first admin account here:\n"
            f"    {base.rstrip('/')}/setup?token={token}\n",
            flush=True,
        )
    uvicorn.run(
        "astra.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        server_header=False,
        log_config=LOG_CONFIG,
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
