"""Sign-in, sign-out and session resolution. Only SHA-256 of a session token is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import anyio
from sqlalchemy import delete, insert, text

from astra.auth.passwords import hash_password, verify_password
from astra.auth.principal import Principal
from astra.db.session import Transaction, act_as
from astra.db.tables import sessions
from astra.errors import Conflict, Forbidden, NotAuthenticated

AUTHENTICATE = text("SELECT id, email, role FROM public.app_authenticate(:token_hash)")
LOGIN_LOOKUP = text("SELECT id, password_hash FROM public.app_login_lookup(:email)")
CREATE_FIRST_ADMIN = text("SELECT public.app_create_first_admin(:email, :password_hash)")


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def authenticate(db: Transaction, token: str | None) -> Principal | None:
    """Resolve a session token and set the RLS context, in one round trip."""
    if not token:
        return None
    row = (await db.execute(AUTHENTICATE, {"token_hash": hash_token(token)})).one_or_none()
    if row is None:
        return None
    return Principal(id=row.id, email=row.email, role=row.role)


async def require_user(db: Transaction, token: str | None) -> Principal:
    """As `authenticate`, for routes that need someone signed in: 401 otherwise."""
    user = await authenticate(db, token)
    if user is None:
        raise NotAuthenticated("Sign in to continue.")
    return user


async def start_session(db: Transaction, user_id: uuid.UUID, ttl: timedelta) -> str:
    await act_as(db, user_id)
    now = datetime.now(UTC)
    # Sign-in is a good moment to forget this user's expired sessions.
    await db.execute(
        delete(sessions).where(sessions.c.user_id == user_id, sessions.c.expires_at <= now)
    )
    token = secrets.token_urlsafe(32)
    await db.execute(
        insert(sessions).values(token_hash=hash_token(token), user_id=user_id, expires_at=now + ttl)
    )
    return token


async def login(db: Transaction, *, email: str, password: str, ttl: timedelta) -> str:
    row = (await db.execute(LOGIN_LOOKUP, {"email": email})).one_or_none()
    password_hash = row.password_hash if row else None
    # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    ok = await anyio.to_thread.run_sync(verify_password, password_hash, password)
    if not ok or row is None:
        raise NotAuthenticated("Incorrect email or password.")
    return await start_session(db, row.id, ttl)


async def logout(db: Transaction, token: str) -> None:
    await db.execute(delete(sessions).where(sessions.c.token_hash == hash_token(token)))


async def create_first_admin(db: Transaction, *, email: str, password: str, ttl: timedelta) -> str:
    password_hash = await anyio.to_thread.run_sync(hash_password, password)
    user_id = (
        await db.execute(CREATE_FIRST_ADMIN, {"email": email, "password_hash": password_hash})
    ).scalar_one()
    if user_id is None:
        raise Conflict("Astra is already set up. Sign in instead.")
    return await start_session(db, user_id, ttl)


def check_setup_token(expected: str | None, given: str) -> None:
    if expected is None or not secrets.compare_digest(expected.encode(), given.encode()):
        raise Forbidden("This set-up link is not valid. Use the link printed by `astra serve`.")
