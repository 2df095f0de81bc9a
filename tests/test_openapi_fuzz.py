"""Schemathesis against the app's own OpenAPI document, signed in as a seller and as an
admin: every operation, valid and invalid input (negative mode), no server error, every
status and body as documented, authentication enforced where declared, and a seller never
reaching another seller's integration.

The app runs in-process (ASGI) in schemathesis's own event loop, on the test database;
sessions, stores and orders are made through the ordinary fixtures first. Bounded and
reproducible: a fixed number of examples per operation, derandomized.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.auths import AuthContext
from schemathesis.checks import not_a_server_error
from schemathesis.hooks import HookContext
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from astra.app import create_app
from astra.auth.deps import SESSION_COOKIE
from testkit.stores import Store, connect_store, send_order
from tests.conftest import PASSWORD, Account, TestDatabase, client_for

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    # Declared security (the session cookie) is enforced: without it, or with a made-up
    # one, the operation answers 401.
    ignored_auth,
]
MAX_EXAMPLES = 60
# Spare sessions for examples of POST /api/auth/logout, which end the session they use.
SPARE_SESSIONS = MAX_EXAMPLES + 10
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


# Query parameters that name an integration, per operation.
QUERY_IDS = {"/api/orders": "integration_id", "/api/webhooks/order": "id"}
STORE_NAME = st.from_regex(r"\A[a-z][a-z0-9]{2,20}\Z")
STORE_SUFFIX = {"shopify": ".myshopify.com", "woocommerce": ".example.com"}


@dataclass
class World:
    """Who the fuzzer acts as, and the records it may aim at."""

    email: str
    session: str
    spare_sessions: list[str]
    # Integrations the caller may use; they stay (never the target of a DELETE).
    kept: list[str]
    # Integrations the caller may delete.
    disposable: list[str]
    # Integrations of another seller: never a 2xx for this caller.
    foreign: list[str]


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy schemas read `Node._nodeid`, which pytest 9.2 keeps as `_id`."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture(scope="module")
def fuzz_app(test_database: TestDatabase) -> Iterator[FastAPI]:
    """Its own app: schemathesis starts the lifespan (the pool) in its event loop."""
    application = create_app(test_database.settings)
    yield application
    asgi.shutdown_lifespans()


def session_of(account: Account) -> str:
    token = account.client.cookies.get(SESSION_COOKIE)
    assert token is not None
    return token


async def spare_sessions(app: FastAPI, account: Account, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        async with client_for(app) as client:
            response = await client.post(
                "/api/auth/login", json={"email": account.email, "password": PASSWORD}
            )
            assert response.status_code == 200, response.text
            tokens.append(response.cookies[SESSION_COOKIE])
    return tokens


async def stores_of(account: Account, prefix: str, count: int) -> list[Store]:
    return [
        await connect_store(account, "shopify", f"{prefix}-{n}.myshopify.com") for n in range(count)
    ]


@pytest.fixture
async def shops(seller: Account, other_seller: Account) -> dict[str, list[str]]:
    """A seller's stores with an order each (deliveries and orders lists are not empty),
    another seller's store, and stores to delete."""
    kept = [
        await connect_store(seller, "shopify", "linen-and-co.myshopify.com"),
        await connect_store(seller, "woocommerce", "cups.example.com"),
    ]
    foreign = await connect_store(other_seller, "shopify", "other-shop.myshopify.com")
    for n, store in enumerate([*kept, foreign]):
        assert (await send_order(seller.client, store, 5500 + n)).status_code == 200
    return {
        "kept": [str(store.id) for store in kept],
        "foreign": [str(foreign.id)],
        "seller_disposable": [str(s.id) for s in await stores_of(seller, "seller-old", 8)],
        "other_disposable": [str(s.id) for s in await stores_of(other_seller, "other-old", 8)],
    }


async def world_of(
    app: FastAPI, account: Account, *, kept: list[str], disposable: list[str], foreign: list[str]
) -> World:
    return World(
        email=account.email,
        session=session_of(account),
        spare_sessions=await spare_sessions(app, account, SPARE_SESSIONS),
        kept=kept,
        disposable=disposable,
        foreign=foreign,
    )


@pytest.fixture
async def seller_world(app: FastAPI, seller: Account, shops: dict[str, list[str]]) -> World:
    return await world_of(
        app,
        seller,
        kept=shops["kept"],
        disposable=shops["seller_disposable"],
        foreign=shops["foreign"],
    )


@pytest.fixture
async def admin_world(app: FastAPI, admin: Account, shops: dict[str, list[str]]) -> World:
    # Admins may use every store: nothing is foreign to them.
    return await world_of(
        app,
        admin,
        kept=shops["kept"] + shops["foreign"],
        disposable=shops["seller_disposable"] + shops["other_disposable"],
        foreign=[],
    )


def or_with(generated: dict[str, Any], key: str, values: st.SearchStrategy[str]) -> Any:
    """The generated value as it is, or with `key` set to one of `values`."""
    return st.one_of(st.just(generated), values.map(lambda value: {**generated, key: value}))


def fuzz_schema(app: FastAPI, world: World) -> Any:
    """The app's document, with `world`'s session and its records mixed into the ids."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @schema.auth(refresh_interval=None)
    class SessionCookie:
        def get(self, case: Case, context: AuthContext) -> str:
            if context.operation.path == "/api/auth/logout" and world.spare_sessions:
                return world.spare_sessions.pop()
            return world.session

        def set(self, case: Case, data: str, context: AuthContext) -> None:
            case.cookies = {**(case.cookies or {}), SESSION_COOKIE: data}

    def ids_for(method: str) -> list[str]:
        return [*(world.disposable if method == "DELETE" else world.kept), *world.foreign]

    @schema.hook
    def flatmap_path_parameters(context: HookContext, path: Any) -> st.SearchStrategy[Any]:
        if not isinstance(path, dict) or "integration_id" not in path:
            return st.just(path)
        assert context.operation is not None
        ids = st.sampled_from(ids_for(context.operation.method.upper()))
        return or_with(path, "integration_id", ids)

    @schema.hook
    def flatmap_query(context: HookContext, query: Any) -> st.SearchStrategy[Any]:
        assert context.operation is not None
        key = QUERY_IDS.get(context.operation.path)
        if key is None or not isinstance(query, dict):
            return st.just(query)
        return or_with(query, key, st.sampled_from(world.kept + world.foreign))

    @schema.hook
    def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
        """Random domains almost never pass the platform's rule, nor random sign-ins:
        mix in valid ones, so the success responses are exercised too."""
        assert context.operation is not None
        if not isinstance(body, dict):
            return st.just(body)
        if context.operation.path == "/api/auth/login":
            return st.one_of(st.just(body), st.just({"email": world.email, "password": PASSWORD}))
        kind = body.get("type", "shopify")
        # Invalid bodies may carry any JSON as the type, a list among them.
        suffix = STORE_SUFFIX.get(kind) if isinstance(kind, str) else None
        if context.operation.path.startswith("/api/integrations") and suffix and "domain" in body:
            return or_with(body, "domain", STORE_NAME.map(lambda name: name + suffix))
        return st.just(body)

    return schema


@pytest.fixture
def seller_api(fuzz_app: FastAPI, seller_world: World) -> Any:
    return fuzz_schema(fuzz_app, seller_world)


@pytest.fixture
def admin_api(fuzz_app: FastAPI, admin_world: World) -> Any:
    return fuzz_schema(fuzz_app, admin_world)


def aimed_at(case: Case, ids: list[str]) -> bool:
    values = [(case.path_parameters or {}).get("integration_id")]
    if case.operation.path == "/api/orders" and isinstance(case.query, dict):
        values.append(case.query.get("integration_id"))
    return any(str(value) in ids for value in values if value is not None)


# Responses per (operation, status), and statuses of a seller's requests aimed at another
# seller's store, printed at the end of the module (`-s`).
ANSWERED: Counter[tuple[str, int]] = Counter()
FOREIGN: Counter[int] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if ANSWERED:
        print(f"\nfuzzed: {ANSWERED.total()} requests (besides the auth probes)")
        for (label, status), count in sorted(ANSWERED.items()):
            print(f"  {count:5}  {status}  {label}")
        print(f"aimed at another seller's store: {dict(sorted(FOREIGN.items()))}")


def exercise(case: Case, world: World) -> None:
    response = case.call_and_validate(checks=CHECKS)
    ANSWERED[case.operation.label, response.status_code] += 1
    if aimed_at(case, world.foreign):
        FOREIGN[response.status_code] += 1
        assert not 200 <= response.status_code < 300, (
            f"{case.operation.label} reached another seller's integration: "
            f"{response.status_code} {response.text[:200]}"
        )


seller_schema = schemathesis.pytest.from_fixture("seller_api")
admin_schema = schemathesis.pytest.from_fixture("admin_api")


@FUZZ_SETTINGS
@seller_schema.parametrize()
def test_api_as_a_seller(case: Case, seller_world: World) -> None:
    exercise(case, seller_world)


@FUZZ_SETTINGS
@admin_schema.parametrize()
def test_api_as_an_admin(case: Case, admin_world: World) -> None:
    exercise(case, admin_world)


def test_the_document_declares_the_session_for_every_private_operation(
    fuzz_app: FastAPI,
) -> None:
    """ignored_auth only probes what the document declares: make sure that is everything
    but sign-in, set-up and the webhook endpoint."""
    public = {("post", "/api/auth/login"), ("post", "/api/auth/setup")}
    public.add(("post", "/api/webhooks/order"))
    document = fuzz_app.openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            declared = operation.get("security") == [{"session": []}]
            assert declared is ((method, path) not in public), (method, path)
