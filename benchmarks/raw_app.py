"""The "raw stack" reference: a minimal ASGI app on asyncpg that runs the same SQL as the
project, with the same per-transaction RLS context, and returns the same JSON.

Nothing here is used by the product; it is the yardstick the project is measured against.
Run: python -m benchmarks.raw_app --port 8101 [--workers N]. It connects as the app role to
the database the project's settings name (DATABASE_URL, ASTRA_DATA_DIR), as `astra serve`.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import orjson
import uvicorn
from sqlalchemy import Executable
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from astra.auth import service as auth
from astra.crypto import decrypt, encrypt
from astra.db.urls import app_url
from astra.integrations import service as integrations
from astra.integrations.api import CONNECTION_FIELDS
from astra.pagination import decode_cursor, encode_cursor
from astra.settings import Settings
from astra.webhooks import service as webhooks
from astra.webhooks.platforms import PLATFORMS, OrderAction, parse_payload
from astra.webhooks.signatures import verify


@dataclass(frozen=True)
class Statement:
    """One of the project's own statements as asyncpg runs it: $n placeholders, and the
    names of its parameters in their order."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, statement: Executable, column_keys: list[str] | None = None) -> Statement:
        compiled = statement.compile(dialect=asyncpg_dialect(), column_keys=column_keys)
        return cls(str(compiled), tuple(compiled.positiontup or ()))

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [values[name] for name in self.names]


AUTHENTICATE = Statement.of(auth.AUTHENTICATE)
LIST_PAGE = {key: Statement.of(query) for key, query in integrations.LIST_PAGE.items()}
INSERT_INTEGRATION = Statement.of(
    integrations.INSERT_INTEGRATION,
    column_keys=["user_id", "name", "type", "domain", "webhook_secret"],
)
WEBHOOK_TARGET = Statement.of(webhooks.TARGET)
WEBHOOK_RECORD = Statement.of(webhooks.RECORD_AND_STORE_ORDER)
MARK_STALE = Statement.of(webhooks.MARK_DELIVERY_STALE)

pool: asyncpg.Pool | None = None
# The project's key: the raw stack stores and reads secrets encrypted, as the project does.
encryption_key = b""


def database_url(settings: Settings) -> str:
    """The app role's URL as asyncpg takes it: without the pooler's statement-cache switch,
    which SQLAlchemy reads and asyncpg would send to the server as a setting."""
    url = app_url(settings).set(drivername="postgresql")
    url = url.difference_update_query(["prepared_statement_cache_size"])
    return url.render_as_string(hide_password=False)


def _cookie_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            for part in value.decode().split(";"):
                key, _, token = part.strip().partition("=")
                if key == "astra_session":
                    return token
    return None


def _base(scope: dict[str, Any]) -> str:
    """The origin webhook URLs start with, as the project builds it from the Host header."""
    host = dict(scope["headers"]).get(b"host", b"127.0.0.1").decode("latin-1")
    return f"{scope['scheme']}://{host}"


def _json(content: Any) -> bytes:
    # Datetimes end in Z, as the project's responses.
    return orjson.dumps(content, option=orjson.OPT_UTC_Z)


def _item(row: asyncpg.Record, base: str) -> dict[str, Any]:
    item = dict(row)
    # asyncpg's own UUID type is not one orjson knows.
    item["id"], item["user_id"] = str(row["id"]), str(row["user_id"])
    item["connection"] = {name: item.pop(column) for column, name in CONNECTION_FIELDS.items()}
    item["webhook_url"] = f"{base}/api/webhooks/order?id={row['id']}"
    return item


async def _send(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global pool, encryption_key
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                settings = Settings()
                encryption_key = settings.encryption_key
                pool = await asyncpg.create_pool(database_url(settings), min_size=10, max_size=20)
                await send({"type": "lifespan.startup.complete"})
            else:
                assert pool is not None
                await pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert pool is not None
    if scope["path"] == "/api/webhooks/order":
        await _webhook(scope, receive, send, pool)
        return
    token = _cookie_token(scope["headers"])
    if token is None:
        await _send(send, 401, b'{"detail":"Sign in to continue."}')
        return
    # As the project does, the answer goes out after the transaction has committed.
    async with pool.acquire() as connection, connection.transaction():
        answer = await _signed_in(connection, scope, receive, token)
    if answer is not None:
        await _send(send, *answer)


async def _signed_in(
    connection: asyncpg.Connection, scope: dict[str, Any], receive: Any, token: str
) -> tuple[int, bytes] | None:
    user = await connection.fetchrow(AUTHENTICATE.sql, hashlib.sha256(token.encode()).digest())
    if user is None:
        return 401, b'{"detail":"Sign in to continue."}'
    base = _base(scope)
    if scope["method"] == "GET":
        query = parse_qs(scope["query_string"].decode())
        limit = int(query.get("limit", ["50"])[0])
        cursor = query.get("cursor", [None])[0]
        values: dict[str, Any] = {"viewer_id": user["id"], "limit": limit + 1}
        if cursor:
            values["after_at"], values["after_id"] = decode_cursor(cursor)
        statement = LIST_PAGE[user["role"] == "admin", bool(cursor)]
        rows = await connection.fetch(statement.sql, *statement.args(values))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
        return 200, _json({"items": [_item(r, base) for r in rows], "next_cursor": next_cursor})
    body = await _read_body(receive)
    if not body:  # the client went away mid-request (wrk stopping)
        return None
    data = orjson.loads(body)
    secret = secrets.token_urlsafe(32)
    try:
        values = {"user_id": user["id"], "webhook_secret": encrypt(encryption_key, secret)} | data
        row = await connection.fetchrow(INSERT_INTEGRATION.sql, *INSERT_INTEGRATION.args(values))
    except asyncpg.UniqueViolationError:
        return 409, b'{"detail":"This store is already connected."}'
    item = _item(row, base) | {
        "owner_email": user["email"],
        "order_count": 0,
        "last_order_at": None,
        "webhook_secret": secret,
    }
    return 201, _json(item)


async def _webhook(scope: dict[str, Any], receive: Any, send: Any, pool: asyncpg.Pool) -> None:
    """A signed Shopify order, checked as the project checks it (the target, which also
    sets the RLS context; the current or previous secret; the sending shop) and stored by
    the project's own statement. Malformed deliveries are not part of the bench."""
    integration_id = uuid.UUID(parse_qs(scope["query_string"].decode())["id"][0])
    body = await _read_body(receive)
    if not body:  # the client went away mid-request (wrk stopping)
        return
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    async with pool.acquire() as connection, connection.transaction():
        answer = await _deliver(connection, integration_id, headers, body)
    await _send(send, *answer)


async def _deliver(
    connection: asyncpg.Connection, integration_id: uuid.UUID, headers: dict[str, str], body: bytes
) -> tuple[int, bytes]:
    target = await connection.fetchrow(WEBHOOK_TARGET.sql, integration_id)
    if target is None:
        return 404, b'{"detail":"No integration with this id."}'
    rules = PLATFORMS[target["platform"]]
    sent = rules.read_headers(headers)
    stored = ("webhook_secret", "previous_webhook_secret", "app_client_secret")
    secrets_ = [decrypt(encryption_key, target[name]) for name in stored if target[name]]
    if not verify(secrets_, body, sent.signature) or not rules.source_matches(
        sent.source, target["domain"]
    ):
        return 401, b'{"detail":"The signature does not match."}'
    payload = parse_payload(body)
    topic = rules.topic(sent)
    action = rules.action(topic, payload.data)
    order = rules.order_version(payload)
    outcome = "stored" if target["is_active"] else "held"
    values = {
        "integration_id": integration_id,
        "delivery_id": rules.idempotency_key(sent, body),
        "user_id": target["user_id"],
        "topic": topic,
        "outcome": outcome,
        "body_bytes": len(body),
        "platform": target["platform"],
        "reason": None,
        "restore": action is OrderAction.restore,
    } | order.parameters()
    recorded, written = await connection.fetchrow(WEBHOOK_RECORD.sql, *WEBHOOK_RECORD.args(values))
    if not recorded:
        return 200, b'{"outcome":"duplicate"}'
    if not written and outcome == "stored":
        await connection.execute(MARK_STALE.sql, *MARK_STALE.args(values))
        return 200, b'{"outcome":"stale"}'
    return 200, _json({"outcome": outcome})


def main() -> None:
    parser = argparse.ArgumentParser(description="The raw stack on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "benchmarks.raw_app:app",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
