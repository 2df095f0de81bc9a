"""No secret, password or body ever reaches a log line.

Every record of every logger (root at DEBUG; uvicorn, SQLAlchemy, astra and the rest at
DEBUG too) is captured while a real uvicorn server goes through the whole flow: sign-in,
a failed sign-in, connecting a store with an admin access token, rotating its secret,
setting the Shopify key, signed and forged Shopify deliveries, and a database error. Each
record is then formatted as production would (astra.logs.JsonFormatter) and with the
default formatter, and searched for every secret of the flow.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.app import create_app
from astra.auth.deps import SESSION_COOKIE
from astra.logs import JsonFormatter
from testkit.stores import Store, encode, hmac_b64, shopify_headers, shopify_order
from tests.conftest import PASSWORD, TestDatabase, make_user

EMAIL = "shopkeeper@example.com"
WRONG_PASSWORD = "not-my-password-7Q2x"
ADMIN_TOKEN = "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"
SHOPIFY_KEY = "f3a9c2e1b7d64a5f8e0c9b1d2a3e4f5c"
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "astra", "asyncio")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def every_log_record() -> Iterator[Capture]:
    """Every logger at DEBUG into one handler on the root, as if an operator turned every
    knob up; levels and handlers are put back afterwards."""
    capture = Capture()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(logger, logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.propagate = True
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate


@asynccontextmanager
async def live_server(test_database: TestDatabase) -> AsyncIterator[httpx.AsyncClient]:
    """The app under uvicorn on a free loopback port, configured as `astra serve` runs it
    (logging left to the test instead of LOG_CONFIG)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(test_database.settings),
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not serving.done(), serving.exception()
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await serving
        sock.close()


async def full_flow(
    client: httpx.AsyncClient, owner_engine: AsyncEngine
) -> tuple[list[str], list[httpx.Response]]:
    """Drive every secret-bearing path; return the secrets it handled and the responses."""
    responses: list[httpx.Response] = []

    async def call(method: str, url: str, **kwargs: object) -> httpx.Response:
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        responses.append(response)
        return response

    await call("POST", "/api/auth/login", json={"email": EMAIL, "password": WRONG_PASSWORD})
    signed_in = await call("POST", "/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    session = signed_in.cookies[SESSION_COOKIE]

    created = await call(
        "POST",
        "/api/integrations",
        json={
            "name": "Linen & Co",
            "type": "shopify",
            "domain": "linen-and-co.myshopify.com",
            "admin_access_token": ADMIN_TOKEN,
        },
    )
    body = created.json()
    first_secret = body["webhook_secret"]
    url = f"/api/integrations/{body['id']}"
    rotated = (await call("POST", f"{url}/secret")).json()["webhook_secret"]
    await call("PUT", url, json={"admin_access_token": ADMIN_TOKEN + "-2"})
    await call("POST", f"{url}/secret", json={"webhook_secret": SHOPIFY_KEY})

    store = Store(body["id"], "shopify", body["domain"], SHOPIFY_KEY)
    order = encode(shopify_order(5523094421734))
    headers = shopify_headers(store, order)
    await call("POST", store.url, content=order, headers=headers)
    forged = shopify_headers(store, order, secret=first_secret + "x")
    await call("POST", store.url, content=order, headers=forged)
    broken = b'{"email": "ada@example.com", "billing_address": {"zip": "SW1Y 4JH"'
    await call("POST", store.url, content=broken, headers=shopify_headers(store, broken))
    await call("GET", f"{url}/deliveries")
    await call("GET", "/api/orders")

    # A database error the app does not expect: a constraint it knows nothing about,
    # on the row holding the secrets.
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "ALTER TABLE public.integrations ADD CONSTRAINT test_no_boom "
                "CHECK (name <> 'Boom') NOT VALID"
            )
        )
    try:
        failed = await call("PUT", url, json={"name": "Boom"})
        assert failed.status_code == 500
    finally:
        async with owner_engine.begin() as connection:
            await connection.execute(
                text("ALTER TABLE public.integrations DROP CONSTRAINT test_no_boom")
            )

    await call("POST", "/api/auth/logout")
    secrets = [
        PASSWORD,
        WRONG_PASSWORD,
        session,
        first_secret,
        rotated,
        SHOPIFY_KEY,
        ADMIN_TOKEN,
        headers["X-Shopify-Hmac-Sha256"],
        hmac_b64(SHOPIFY_KEY, order),
        # Fragments of the order body: the buyer and their address.
        "ada@example.com",
        "Lovelace",
        "St James's Square",
        "SW1Y 4JH",
        "203.0.113.7",
    ]
    return secrets, responses


async def test_no_secret_or_body_reaches_any_log_record(
    test_database: TestDatabase, owner_engine: AsyncEngine, password_hash: str
) -> None:
    await make_user(owner_engine, EMAIL, "seller", password_hash)
    with every_log_record() as capture:
        async with live_server(test_database) as client:
            secrets, responses = await full_flow(client, owner_engine)

    statuses = [response.status_code for response in responses]
    assert statuses == [401, 200, 201, 200, 200, 200, 200, 401, 400, 200, 200, 500, 204]
    # The test's own HTTP client (httpx, httpcore) logs the headers it receives, cookies
    # included: it is not the server, so its records are left out.
    records = [r for r in capture.records if not r.name.startswith(("httpx", "httpcore"))]
    formatters = [JsonFormatter(), logging.Formatter()]
    lines = [formatter.format(record) for record in records for formatter in formatters]
    loggers = {record.name.split(".")[0] for record in records}
    # The capture saw the server, the database layer and the app, not an empty room.
    assert {"uvicorn", "sqlalchemy", "astra"} <= loggers, loggers
    assert any("database error" in line for line in lines)
    assert any("webhook refused" in line for line in lines)
    for secret in secrets:
        leaks = [line for line in lines if secret in line]
        assert not leaks, (secret, leaks[:3])
