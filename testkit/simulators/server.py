"""One real HTTPS server on 127.0.0.1 hosting many simulated stores.

A request reaches a store by its Host header (the store's own domain, as with the default
`https://{domain}`) or by the first path segment (`https://127.0.0.1:PORT/{domain}/...`, the
`ASTRA_STORE_API_URL` tests use). The certificate comes from a throwaway test CA (trustme);
hand `ca_file` to whatever must trust it (Astra's `store_ca_bundle`). A plain-HTTP listener
on another port serves the same stores, for what a store does when called without TLS.

Requests whose Host is `storage.googleapis.com` go to `server.storage`, the simulated cloud
storage where Shopify's bulk operation results are downloaded from (tests resolve that
name to 127.0.0.1).

Receivers (`server.receiver(name)`) are endpoints on the same server that record what the
stores deliver to them and answer with a chosen status: a stand-in for a webhook target.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import trustme
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from astra.settings import Settings
from testkit.simulators.storage import HOST as STORAGE_HOST
from testkit.simulators.storage import SimulatedStorage

if TYPE_CHECKING:
    from testkit.simulators.base import SimulatedStore

# Names the test certificate covers: loopback, and the hostnames tests make "resolve" there.
CERT_NAMES = ("127.0.0.1", "localhost", "*.example.com", "*.myshopify.com", STORAGE_HOST)
RECEIVER_PREFIX = "_receiver"
S = TypeVar("S", bound="SimulatedStore")


@dataclass
class Delivery:
    """One request a receiver got."""

    method: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    name: str
    url: str
    # What the receiver answers; a test sets it to make deliveries fail.
    status: int = 200
    requests: list[Delivery] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(
            Delivery(request.method, {k.lower(): v for k, v in request.headers.items()}, body)
        )
        return PlainTextResponse("ok" if self.status < 300 else "no", status_code=self.status)


class StoreServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stores: dict[str, SimulatedStore] = {}
        self.receivers: dict[str, Receiver] = {}
        self.storage = SimulatedStorage()
        ca = trustme.CA()
        self.ca_file = directory / "store-ca.pem"
        ca.cert_pem.write_to_path(self.ca_file)
        self._cert_file = directory / "store-cert.pem"
        ca.issue_cert(*CERT_NAMES).private_key_and_cert_chain_pem.write_to_path(self._cert_file)
        self.port = 0
        self.http_port = 0
        # Deliveries from the stores to receivers on this server: real HTTPS, trusting the CA.
        self.delivery_client = httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=str(self.ca_file)),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(60.0),
        )

    @property
    def url_template(self) -> str:
        """The ASTRA_STORE_API_URL that reaches every store on this server over HTTPS."""
        return f"https://127.0.0.1:{self.port}/{{domain}}"

    @property
    def http_url_template(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/{{domain}}"

    def settings(self, base: Settings | None = None, **overrides: Any) -> Settings:
        """`base` (or fresh defaults) pointed at this server and trusting its CA."""
        values: dict[str, Any] = {
            "store_api_url": self.url_template,
            "store_ca_bundle": self.ca_file,
            **overrides,
        }
        return (base or Settings()).model_copy(update=values)

    def add(self, store: S) -> S:
        self.stores[store.domain] = store
        store.attach(self)
        return store

    def alias(self, domain: str, store: SimulatedStore) -> None:
        """Serve `store` under a second domain too (a store answering for another address)."""
        self.stores[domain] = store

    def receiver(self, name: str, status: int = 200) -> Receiver:
        receiver = Receiver(name, f"https://127.0.0.1:{self.port}/{RECEIVER_PREFIX}/{name}", status)
        self.receivers[name] = receiver
        return receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._dispatch(request)
        await response(scope, receive, send)

    async def _dispatch(self, request: Request) -> Response:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].lower()
        path = request.url.path
        store = self.stores.get(host)
        if store is not None:
            return await store.serve(request, path)
        if host == STORAGE_HOST:
            return await self.storage.serve(request)
        first, _, rest = path.lstrip("/").partition("/")
        if first == RECEIVER_PREFIX and rest in self.receivers:
            return await self.receivers[rest].handle(request)
        store = self.stores.get(first.lower())
        if store is None:
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        return await store.serve(request, "/" + rest)

    @classmethod
    @asynccontextmanager
    async def running(cls, directory: Path) -> AsyncIterator[StoreServer]:
        server = cls(directory)
        https_socket, server.port = _listening_socket()
        server.storage.port = server.port
        http_socket, server.http_port = _listening_socket()
        https = _uvicorn(server, ssl_files=(server._cert_file, server._cert_file))
        http = _uvicorn(server, ssl_files=None)
        tasks = [
            asyncio.create_task(https.serve(sockets=[https_socket])),
            asyncio.create_task(http.serve(sockets=[http_socket])),
        ]
        try:
            async with asyncio.timeout(10):
                # uvicorn offers a flag, not an event, for having started.
                while not (https.started and http.started):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            yield server
        finally:
            https.should_exit = http.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.delivery_client.aclose()


def _listening_socket() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by every connection: an answer's last segment goes out at once instead of
    # waiting (Nagle) for the client's delayed ACK, 40 ms a response.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    return sock, port


def _uvicorn(app: StoreServer, *, ssl_files: tuple[Path, Path] | None) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ssl_certfile=str(ssl_files[0]) if ssl_files else None,
        ssl_keyfile=str(ssl_files[1]) if ssl_files else None,
        # A store told to stall must not hold the test run up at shutdown.
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)
