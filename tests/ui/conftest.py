"""Real Chromium against the real app: a live uvicorn server on a free loopback port, one
browser per session, a fresh context (cookies, clipboard, listeners) per test. A second live
server (`store_ui`) calls the simulated stores (testkit/simulators) and has an https public
URL, as Shopify's webhooks require; Chromium keeps its Secure cookie on http://127.0.0.1, a
secure context, so the browser still reaches it there.

Every test also checks, on the way out, that the page logged no console error, raised no
script error, opened no alert/confirm dialog, and sent no request outside the app's origin.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.app import create_app
from astra.settings import Settings
from testkit.simulators.server import StoreServer
from tests.conftest import PASSWORD, TestDatabase, make_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
SETUP_TOKEN = "ui-test-setup-token"
DESKTOP = {"width": 1280, "height": 860}
# Where the stores are told to deliver (the webhook URLs): https, as Shopify requires.
PUBLIC_URL = "https://astra.example.com"


@pytest.fixture(scope="session")
def live_server(test_database: TestDatabase) -> Iterator[str]:
    settings = test_database.settings.model_copy(
        update={"setup_token": SETUP_TOKEN, "access_log": False}
    )
    with serving(settings) as url:
        yield url


@pytest.fixture(scope="session")
def store_live_server(test_database: TestDatabase, store_server: StoreServer) -> Iterator[str]:
    """The app calling the simulated stores over real HTTPS, public at an https address."""
    base = test_database.settings.model_copy(update={"access_log": False})
    with serving(store_server.settings(base, public_url=PUBLIC_URL)) as url:
        yield url


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `scripts/ensure-system-packages.sh chromium`.")
    return str(CHROMIUM)


@pytest.fixture(scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class Session:
    """One browser context on the live app, and everything it did that it shouldn't have."""

    base_url: str
    context: BrowserContext
    page: Page
    name: str
    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    script_dialogs: list[str] = field(default_factory=list)
    expected_errors: list[str] = field(default_factory=list)
    background: set[asyncio.Future[None]] = field(default_factory=set)
    shots: int = 0

    def expect_http_error(self, status: int) -> None:
        """Chromium logs every 4xx fetch as a console error; allow this one the test causes."""
        self.expected_errors.append(f"status of {status}")

    async def shot(self, step: str, *, full_page: bool = True) -> None:
        """Keep a screenshot of this step under test-artifacts/ui/ (not committed)."""
        self.shots += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{self.shots:02d}-{_slug(step)}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)

    async def sign_in(self, email: str) -> None:
        """Sign in through the JSON API; the session cookie lands in this context."""
        response = await self.context.request.post(
            f"{self.base_url}/api/auth/login", data={"email": email, "password": PASSWORD}
        )
        assert response.status == 200, await response.text()

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the JSON API as the signed-in user (for arranging data, not for asserting UI)."""
        response = await self.context.request.fetch(
            f"{self.base_url}{path}", method=method, data=body
        )
        assert response.ok, f"{method} {path}: {response.status} {await response.text()}"
        return await response.json() if response.status != 204 else None

    async def create_store(self, name: str, platform: str, domain: str) -> Any:
        return await self.api(
            "POST", "/api/integrations", {"name": name, "type": platform, "domain": domain}
        )

    async def open(self, path: str = "/settings/integrations") -> None:
        await self.page.goto(f"{self.base_url}{path}")

    def assert_clean(self) -> None:
        unexpected = [
            error
            for error in self.console_errors
            if not any(allowed in error for allowed in self.expected_errors)
        ]
        assert unexpected == [], "console errors"
        assert self.foreign_requests == [], "requests left the app's origin"
        assert self.script_dialogs == [], "a script opened a dialog"


@pytest.fixture
async def ui(
    browser: Browser, live_server: str, request: pytest.FixtureRequest
) -> AsyncIterator[Session]:
    async with browsing(browser, live_server, _slug(request.node.name)) as session:
        yield session


@pytest.fixture
async def store_ui(
    browser: Browser, store_live_server: str, request: pytest.FixtureRequest
) -> AsyncIterator[Session]:
    """As `ui`, on the live server that calls the simulated stores."""
    async with browsing(browser, store_live_server, _slug(request.node.name)) as session:
        yield session


@asynccontextmanager
async def browsing(browser: Browser, live_server: str, name: str) -> AsyncIterator[Session]:
    context = await browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page = await context.new_page()
    session = Session(live_server, context, page, name)

    def on_console(message: Any) -> None:
        if message.type == "error":
            session.console_errors.append(message.text)

    def on_request(req: Any) -> None:
        if not req.url.startswith((f"{live_server}/", "data:", "blob:", "about:")):
            session.foreign_requests.append(req.url)

    def on_dialog(dialog: Any) -> None:
        session.script_dialogs.append(dialog.message)
        task = asyncio.ensure_future(dialog.dismiss())
        session.background.add(task)
        task.add_done_callback(session.background.discard)

    page.on("console", on_console)
    page.on("pageerror", lambda error: session.console_errors.append(str(error)))
    page.on("dialog", on_dialog)
    context.on("request", on_request)
    yield session
    await context.close()
    session.assert_clean()


@pytest.fixture
async def seller_email(owner_engine: AsyncEngine, password_hash: str) -> str:
    email = "sam@northwind.example"
    await make_user(owner_engine, email, "seller", password_hash)
    return email


@pytest.fixture
async def other_seller_email(owner_engine: AsyncEngine, password_hash: str) -> str:
    email = "olivia@harbor.example"
    await make_user(owner_engine, email, "seller", password_hash)
    return email


@pytest.fixture
async def admin_email(owner_engine: AsyncEngine, password_hash: str) -> str:
    email = "ada@astra.example"
    await make_user(owner_engine, email, "admin", password_hash)
    return email
