"""The "raw stack" reference: a minimal ASGI app on asyncpg that runs the same SQL as the
project, with the same per-transaction RLS context, and returns the same JSON.

Nothing here is used by the product; it is the yardstick the project is measured against.
Run: uvicorn benchmarks.raw_app:app (env RAW_DATABASE_URL = the app role's URL).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import orjson
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from astra.pagination import decode_cursor, encode_cursor
from astra.webhooks import service as webhooks
from astra.webhooks.platforms import PLATFORMS, OrderAction, parse_payload
from astra.webhooks.signatures import verify

AUTHENTICATE = "SELECT id, email, role FROM public.app_authenticate($1)"
# The project's list statement, with its per-store order stats; sellers get the owner
# condition, admins none, and a cursor adds the keyset condition.
LIST_SQL = """
SELECT i.id, i.user_id, i.name, i.type, i.domain, i.is_active, i.created_at, i.updated_at,
       i.admin_access_token IS NOT NULL AS has_admin_access_token, u.email AS owner_email,
       s.order_count, s.last_order_at
FROM public.integrations i JOIN public.users u ON u.id = i.user_id
JOIN LATERAL (SELECT count(*) AS order_count, max(o.received_at) AS last_order_at
              FROM public.orders o
              WHERE o.integration_id = i.id AND o.deleted_at IS NULL) AS s ON true
WHERE {conditions}
ORDER BY i.created_at DESC, i.id DESC
LIMIT $1
"""
SELLER, AFTER = "i.user_id = $2", "(i.created_at, i.id) < ($3, $4)"
LIST_STATEMENTS = {
    (False, False): LIST_SQL.format(conditions=SELLER),
    (False, True): LIST_SQL.format(conditions=f"{SELLER} AND {AFTER}"),
    (True, False): LIST_SQL.format(conditions="true"),
    (True, True): LIST_SQL.format(conditions=AFTER.replace("$3", "$2").replace("$4", "$3")),
}
INSERT_SQL = """
INSERT INTO public.integrations (user_id, name, type, domain, webhook_secret)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, user_id, name, type, domain, is_active, created_at, updated_at,
          admin_access_token IS NOT NULL AS has_admin_access_token
"""


def _asyncpg_sql(statement: TextClause) -> tuple[str, tuple[str, ...]]:
    """The project's own webhook statement as asyncpg runs it: $n placeholders, and the
    parameter names in their order."""
    compiled = statement.compile(dialect=asyncpg_dialect())
    return str(compiled), tuple(compiled.positiontup or ())


WEBHOOK_TARGET = _asyncpg_sql(webhooks.TARGET)
WEBHOOK_RECORD = _asyncpg_sql(webhooks.RECORD_AND_UPSERT_ORDER)
MARK_STALE_SQL = _asyncpg_sql(webhooks.MARK_DELIVERY_STALE)[0]

pool: asyncpg.Pool | None = None


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
    global pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                pool = await asyncpg.create_pool(
                    os.environ["RAW_DATABASE_URL"], min_size=10, max_size=20
                )
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
    user = await connection.fetchrow(AUTHENTICATE, hashlib.sha256(token.encode()).digest())
    if user is None:
        return 401, b'{"detail":"Sign in to continue."}'
    base = _base(scope)
    if scope["method"] == "GET":
        query = parse_qs(scope["query_string"].decode())
        limit = int(query.get("limit", ["50"])[0])
        cursor = query.get("cursor", [None])[0]
        is_admin = user["role"] == "admin"
        args = [limit + 1] + ([] if is_admin else [user["id"]])
        if cursor:
            args += list(decode_cursor(cursor))
        rows = await connection.fetch(LIST_STATEMENTS[is_admin, bool(cursor)], *args)
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
        row = await connection.fetchrow(
            INSERT_SQL, user["id"], data["name"], data["type"], data["domain"], secret
        )
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
    sql, _ = WEBHOOK_TARGET
    target = await connection.fetchrow(sql, integration_id)
    if target is None:
        return 404, b'{"detail":"No integration with this id."}'
    rules = PLATFORMS[target["type"]]
    sent = rules.read_headers(headers)
    secrets_ = [s for s in (target["webhook_secret"], target["previous_webhook_secret"]) if s]
    if not verify(secrets_, body, sent.signature) or not rules.source_matches(
        sent.source, target["domain"]
    ):
        return 401, b'{"detail":"The signature does not match."}'
    payload = parse_payload(body)
    topic = rules.topic(sent)
    action = rules.action(topic, payload.data)
    order = rules.order_fields(payload.data)
    outcome = "stored" if target["is_active"] else "held"
    values = {
        "integration_id": integration_id,
        "delivery_id": rules.idempotency_key(sent, body),
        "user_id": target["user_id"],
        "topic": topic,
        "platform_order_id": order.platform_order_id,
        "outcome": outcome,
        "body_bytes": len(body),
        "platform": target["type"],
        "order_number": order.order_number,
        "total": order.total,
        "currency": order.currency,
        "financial_status": order.financial_status,
        "placed_at": order.placed_at,
        "source_updated_at": order.source_updated_at,
        "raw": payload.json_text,
        "restore": action is OrderAction.restore,
    }
    sql, names = WEBHOOK_RECORD
    recorded, written = await connection.fetchrow(sql, *(values[name] for name in names))
    if not recorded:
        return 200, b'{"outcome":"duplicate"}'
    if not written and outcome == "stored":
        await connection.execute(MARK_STALE_SQL, integration_id, values["delivery_id"])
        return 200, b'{"outcome":"stale"}'
    return 200, _json({"outcome": outcome})
