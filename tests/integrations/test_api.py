"""The integrations JSON API: every route for each kind of caller, validation, conflicts,
pagination, webhook URLs and the OpenAPI document. Runs on the migrated schema."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.crypto import decrypt
from tests.conftest import PASSWORD, Account, TestDatabase, running, signed_in

BASE = "/api/integrations"
STORE = {"name": "Corner Shop", "type": "woocommerce", "domain": "corner.example.com"}

# The contract's fields (../shared/ARCHITECTURE.md) plus owner_email, which the list shows admins.
CONTRACT_KEYS = {
    "id",
    "user_id",
    "name",
    "type",
    "domain",
    "is_active",
    "created_at",
    "updated_at",
    "webhook_url",
    "owner_email",
}
# Order statistics other work adds; any other key is a leak until the contract names it.
OPTIONAL_KEYS = {
    "order_count",
    "last_order_at",
    "has_admin_access_token",
    "has_credentials",
    "connection",
}
SECRET_KEYS = {"webhook_secret", "admin_access_token"}
NOT_SIGNED_IN = {"detail": "Sign in to continue."}
NOT_YOURS = {"detail": "This integration belongs to another account."}
NOT_FOUND = {"detail": "No integration with this id."}
TAKEN = {"detail": "This store is already connected."}
SOMEONE_ELSE = str(uuid.uuid4())


def assert_public(item: dict[str, Any]) -> None:
    keys = set(item)
    assert keys >= CONTRACT_KEYS, CONTRACT_KEYS - keys
    assert keys - CONTRACT_KEYS <= OPTIONAL_KEYS, keys - CONTRACT_KEYS
    assert not keys & SECRET_KEYS


def contract(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in CONTRACT_KEYS}


def locs(response: httpx.Response) -> list[list[str | int]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post(BASE, json={**STORE, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(owner_engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every integration row as the owner sees it, secrets included."""
    async with owner_engine.connect() as connection:
        result = await connection.execute(text("SELECT * FROM public.integrations ORDER BY id"))
        return [dict(row) for row in result.mappings()]


async def walk(client: httpx.AsyncClient, limit: int) -> tuple[list[str], list[int]]:
    """Follow next_cursor to the end; return the ids seen and each page's size."""
    ids: list[str] = []
    sizes: list[int] = []
    params: dict[str, str | int] = {"limit": limit}
    while True:
        response = await client.get(BASE, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [item["id"] for item in page["items"]]
        sizes.append(len(page["items"]))
        if page["next_cursor"] is None:
            return ids, sizes
        params["cursor"] = page["next_cursor"]
        assert len(sizes) < 100, "pagination does not terminate"


async def insert_rows(owner_engine: AsyncEngine, user_id: uuid.UUID, count: int) -> None:
    """Insert `count` integrations in one transaction: they share one created_at."""
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO public.integrations (user_id, name, type, domain, webhook_secret) "
                "SELECT :user_id, 'Store ' || n, 'woocommerce', 'bulk' || n || '.example.com', "
                "repeat('s', 32) FROM generate_series(1, :count) AS n"
            ),
            {"user_id": user_id, "count": count},
        )


async def sign_in(client: httpx.AsyncClient, email: str) -> None:
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text


@pytest.fixture
async def owned(seller: Account) -> dict[str, Any]:
    """An integration belonging to `seller`, as the 201 returned it."""
    return await create(seller.client)


@pytest.fixture
async def caller(
    request: pytest.FixtureRequest,
    seller: Account,
    app: FastAPI,
    owner_engine: AsyncEngine,
    password_hash: str,
) -> AsyncIterator[Account]:
    """Parametrised by "owner", "other seller" or "admin"; signs in only the one asked for."""
    if request.param == "owner":
        yield seller
        return
    role = "admin" if request.param == "admin" else "seller"
    email = request.param.replace(" ", "-") + "@example.com"
    account = await signed_in(app, owner_engine, email, role, password_hash)
    yield account
    await account.client.aclose()


CALLERS = pytest.mark.parametrize("caller", ["owner", "other seller", "admin"], indirect=True)


# --- anonymous -------------------------------------------------------------------------


ROUTES = [
    ("GET", BASE, None),
    ("POST", BASE, STORE | {"domain": "anonymous.example.com"}),
    ("GET", BASE + "/{id}", None),
    ("PUT", BASE + "/{id}", {"name": "Taken over"}),
    ("DELETE", BASE + "/{id}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_anonymous_is_refused_on_every_route(
    anonymous: httpx.AsyncClient,
    owned: dict[str, Any],
    owner_engine: AsyncEngine,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    before = await stored(owner_engine)
    response = await anonymous.request(method, path.format(id=owned["id"]), json=body)
    assert response.status_code == 401
    assert response.json() == NOT_SIGNED_IN
    assert await stored(owner_engine) == before


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_unknown_session_cookie_is_anonymous(
    app: FastAPI,
    owned: dict[str, Any],
    owner_engine: AsyncEngine,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    before = await stored(owner_engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        cookies={"astra_session": "forged-" + "x" * 40},
    ) as client:
        response = await client.request(method, path.format(id=owned["id"]), json=body)
    assert response.status_code == 401
    assert response.json() == NOT_SIGNED_IN
    assert await stored(owner_engine) == before


async def test_anonymous_gets_401_before_any_validation(anonymous: httpx.AsyncClient) -> None:
    # Signed-out callers learn nothing about the input rules or which ids exist.
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", BASE, {"content": b"{not json"}),
        ("POST", BASE, {"json": {"user_id": str(uuid.uuid4())}}),
        ("GET", BASE + "/not-a-uuid", {}),
        ("GET", BASE, {"params": {"limit": 0}}),
    ]
    for method, path, kwargs in requests:
        response = await anonymous.request(method, path, **kwargs)
        assert (response.status_code, response.json()) == (401, NOT_SIGNED_IN), (method, path)


# --- the owner -------------------------------------------------------------------------


async def test_owner_creates_an_integration(
    seller: Account, owner_engine: AsyncEngine, test_database: TestDatabase
) -> None:
    response = await seller.client.post(BASE, json=STORE)

    assert response.status_code == 201
    body = response.json()
    assert set(body) - OPTIONAL_KEYS == CONTRACT_KEYS | {"webhook_secret"}
    assert "admin_access_token" not in body
    integration_id = uuid.UUID(body["id"])
    assert body["user_id"] == str(seller.id)
    assert body["owner_email"] == seller.email
    assert (body["name"], body["type"], body["domain"]) == (
        "Corner Shop",
        "woocommerce",
        "corner.example.com",
    )
    assert body["is_active"] is True
    created_at = datetime.fromisoformat(body["created_at"])
    assert created_at.tzinfo is not None
    assert body["updated_at"] == body["created_at"]
    assert body["webhook_url"] == f"http://testserver/api/webhooks/order?id={integration_id}"
    assert len(body["webhook_secret"]) >= 32
    [row] = await stored(owner_engine)
    assert row["id"] == integration_id
    assert row["user_id"] == seller.id
    # Stored encrypted (tests/security/test_token_at_rest.py reads a dump of the table).
    assert row["webhook_secret"] != body["webhook_secret"]
    assert (
        decrypt(test_database.settings.encryption_key, row["webhook_secret"])
        == (body["webhook_secret"])
    )
    assert row["credentials"] is None
    assert body["has_credentials"] is False


async def test_each_integration_gets_its_own_secret(seller: Account) -> None:
    first = await create(seller.client, domain="one.example.com")
    second = await create(seller.client, domain="two.example.com")
    assert first["webhook_secret"] != second["webhook_secret"]


async def test_owner_reads_and_lists_without_secrets(
    seller: Account, owned: dict[str, Any]
) -> None:
    response = await seller.client.get(f"{BASE}/{owned['id']}")
    assert response.status_code == 200
    read = response.json()
    assert_public(read)
    assert contract(read) == contract(owned)
    assert owned["webhook_secret"] not in response.text

    response = await seller.client.get(BASE)
    assert response.status_code == 200
    page = response.json()
    assert set(page) == {"items", "next_cursor"}
    assert page["next_cursor"] is None
    [item] = page["items"]
    assert_public(item)
    assert contract(item) == contract(owned)
    assert owned["webhook_secret"] not in response.text


async def test_owner_updates_any_subset_of_fields(
    seller: Account, owned: dict[str, Any], owner_engine: AsyncEngine, test_database: TestDatabase
) -> None:
    response = await seller.client.put(
        f"{BASE}/{owned['id']}", json={"name": "  Renamed Shop  ", "is_active": False}
    )

    assert response.status_code == 200
    updated = response.json()
    assert_public(updated)
    assert owned["webhook_secret"] not in response.text
    assert updated["name"] == "Renamed Shop"
    assert updated["is_active"] is False
    unchanged = ("id", "user_id", "type", "domain", "created_at", "webhook_url", "owner_email")
    assert {key: updated[key] for key in unchanged} == {key: owned[key] for key in unchanged}
    assert datetime.fromisoformat(updated["updated_at"]) > datetime.fromisoformat(
        owned["updated_at"]
    )
    read = (await seller.client.get(f"{BASE}/{owned['id']}")).json()
    assert contract(read) == contract(updated)
    [row] = await stored(owner_engine)
    assert (
        decrypt(test_database.settings.encryption_key, row["webhook_secret"])
        == (owned["webhook_secret"])
    )

    response = await seller.client.put(
        f"{BASE}/{owned['id']}",
        json={"type": "shopify", "domain": "https://Corner-Shop.myshopify.com/"},
    )
    assert response.status_code == 200
    assert (response.json()["type"], response.json()["domain"]) == (
        "shopify",
        "corner-shop.myshopify.com",
    )
    assert response.json()["name"] == "Renamed Shop"


async def test_empty_update_changes_nothing(
    seller: Account, owned: dict[str, Any], owner_engine: AsyncEngine
) -> None:
    before = await stored(owner_engine)
    response = await seller.client.put(f"{BASE}/{owned['id']}", json={})
    assert response.status_code == 200
    assert contract(response.json()) == contract(owned)
    assert await stored(owner_engine) == before


async def test_owner_deletes(
    seller: Account, owned: dict[str, Any], owner_engine: AsyncEngine
) -> None:
    response = await seller.client.delete(f"{BASE}/{owned['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert await stored(owner_engine) == []
    response = await seller.client.get(f"{BASE}/{owned['id']}")
    assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert (await seller.client.get(BASE)).json() == {"items": [], "next_cursor": None}
    response = await seller.client.delete(f"{BASE}/{owned['id']}")
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


async def test_deleted_domain_can_be_connected_again(
    seller: Account, other_seller: Account, owned: dict[str, Any]
) -> None:
    assert (await seller.client.delete(f"{BASE}/{owned['id']}")).status_code == 204
    again = await create(other_seller.client)
    assert again["domain"] == owned["domain"]
    assert again["id"] != owned["id"]


# --- another seller --------------------------------------------------------------------


async def test_other_seller_cannot_read_a_foreign_record(
    other_seller: Account, owned: dict[str, Any]
) -> None:
    response = await other_seller.client.get(f"{BASE}/{owned['id']}")
    assert (response.status_code, response.json()) == (403, NOT_YOURS)


async def test_other_seller_never_sees_foreign_records_in_the_list(
    other_seller: Account, owned: dict[str, Any]
) -> None:
    response = await other_seller.client.get(BASE)
    assert (response.status_code, response.json()) == (200, {"items": [], "next_cursor": None})

    mine = await create(other_seller.client, domain="mine.example.com")
    page = (await other_seller.client.get(BASE)).json()
    assert [item["id"] for item in page["items"]] == [mine["id"]]
    assert owned["domain"] not in str(page)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("PUT", {"name": "Hijacked"}),
        ("PUT", {"is_active": False}),
        ("PUT", {"domain": "hijacked.example.com"}),
        ("DELETE", None),
    ],
)
async def test_other_seller_cannot_change_a_foreign_record(
    other_seller: Account,
    owned: dict[str, Any],
    owner_engine: AsyncEngine,
    method: str,
    body: dict[str, Any] | None,
) -> None:
    before = await stored(owner_engine)
    assert len(before) == 1
    response = await other_seller.client.request(method, f"{BASE}/{owned['id']}", json=body)
    assert (response.status_code, response.json()) == (403, NOT_YOURS)
    assert await stored(owner_engine) == before


async def test_other_seller_creates_records_of_their_own(
    other_seller: Account, owned: dict[str, Any]
) -> None:
    mine = await create(other_seller.client, domain="mine.example.com")
    assert mine["user_id"] == str(other_seller.id)
    assert mine["owner_email"] == other_seller.email


# --- admin -----------------------------------------------------------------------------


async def test_admin_lists_every_sellers_records(
    seller: Account, other_seller: Account, admin: Account
) -> None:
    first = await create(seller.client, domain="first.example.com")
    second = await create(other_seller.client, domain="second.example.com")
    third = await create(admin.client, domain="third.example.com")

    page = (await admin.client.get(BASE)).json()
    assert [(item["id"], item["owner_email"]) for item in page["items"]] == [
        (third["id"], admin.email),
        (second["id"], other_seller.email),
        (first["id"], seller.email),
    ]
    for item in page["items"]:
        assert_public(item)
    assert third["user_id"] == str(admin.id)
    # Sellers still see only their own.
    seller_page = (await seller.client.get(BASE)).json()
    assert [item["id"] for item in seller_page["items"]] == [first["id"]]


async def test_admin_reads_a_sellers_record(admin: Account, owned: dict[str, Any]) -> None:
    response = await admin.client.get(f"{BASE}/{owned['id']}")
    assert response.status_code == 200
    assert_public(response.json())
    assert contract(response.json()) == contract(owned)


async def test_admin_updates_a_sellers_record_without_taking_it_over(
    admin: Account, seller: Account, owned: dict[str, Any]
) -> None:
    response = await admin.client.put(
        f"{BASE}/{owned['id']}", json={"name": "Checked by admin", "is_active": False}
    )
    assert response.status_code == 200
    updated = response.json()
    assert (updated["name"], updated["is_active"]) == ("Checked by admin", False)
    assert updated["user_id"] == str(seller.id)
    assert updated["owner_email"] == seller.email
    read = (await seller.client.get(f"{BASE}/{owned['id']}")).json()
    assert (read["name"], read["is_active"]) == ("Checked by admin", False)


async def test_admin_deletes_a_sellers_record(
    admin: Account, seller: Account, owned: dict[str, Any], owner_engine: AsyncEngine
) -> None:
    response = await admin.client.delete(f"{BASE}/{owned['id']}")
    assert response.status_code == 204
    assert await stored(owner_engine) == []
    response = await seller.client.get(f"{BASE}/{owned['id']}")
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


# --- unknown and malformed ids ---------------------------------------------------------


@CALLERS
async def test_unknown_id_is_404(
    caller: Account, owned: dict[str, Any], owner_engine: AsyncEngine
) -> None:
    before = await stored(owner_engine)
    for method, body in [("GET", None), ("PUT", {"name": "Nobody"}), ("DELETE", None)]:
        response = await caller.client.request(method, f"{BASE}/{uuid.uuid4()}", json=body)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), method
    assert await stored(owner_engine) == before


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_malformed_id_is_422(
    seller: Account, owned: dict[str, Any], method: str, bad_id: str
) -> None:
    body = {"name": "x"} if method == "PUT" else None
    response = await seller.client.request(method, f"{BASE}/{bad_id}", json=body)
    assert locs(response) == [["path", "integration_id"]]
    assert response.json()["detail"][0]["type"] == "uuid_parsing"


# --- create: invalid input -------------------------------------------------------------


@pytest.fixture
async def unchanged(owner_engine: AsyncEngine, seller: Account) -> AsyncIterator[None]:
    """Assert the test's refused request left every integration as it was."""
    await create(seller.client, domain="existing.example.com")
    before = await stored(owner_engine)
    yield
    assert await stored(owner_engine) == before


@pytest.mark.usefixtures("unchanged")
async def test_create_rejects_malformed_json(seller: Account) -> None:
    response = await seller.client.post(
        BASE, content=b'{"name": "x",', headers={"content-type": "application/json"}
    )
    [error] = response.json()["detail"]
    assert response.status_code == 422
    assert error["type"] == "json_invalid"
    assert error["loc"][0] == "body"


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("body", [[STORE], "a string", 42, None])
async def test_create_rejects_a_body_that_is_not_an_object(seller: Account, body: Any) -> None:
    response = await seller.client.post(BASE, json=body)
    assert locs(response) == [["body"]]


@pytest.mark.usefixtures("unchanged")
async def test_create_lists_every_missing_field(seller: Account) -> None:
    response = await seller.client.post(BASE, json={})
    assert sorted(locs(response)) == [["body", "domain"], ["body", "name"], ["body", "type"]]
    assert {error["type"] for error in response.json()["detail"]} == {"missing"}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "field",
    ["user_id", "id", "webhook_secret", "owner_email", "created_at", "has_admin_access_token"],
)
async def test_create_rejects_unknown_fields(seller: Account, field: str) -> None:
    # Above all, nobody chooses the owner or the secret.
    value = SOMEONE_ELSE if field in {"user_id", "id"} else "chosen-by-the-client-1234"
    response = await seller.client.post(BASE, json=STORE | {field: value})
    assert locs(response) == [["body", field]]
    assert response.json()["detail"][0]["type"] == "extra_forbidden"


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("fields", "loc", "error_type"),
    [
        ({"type": "magento"}, "type", "enum"),
        ({"type": "Shopify"}, "type", "enum"),
        ({"type": None}, "type", "enum"),
        ({"name": 42}, "name", "string_type"),
        ({"name": None}, "name", "string_type"),
        ({"domain": ["a.example.com"]}, "domain", "string_type"),
        ({"name": ""}, "name", "string_too_short"),
        ({"name": "   "}, "name", "string_too_short"),
        ({"name": "x" * 101}, "name", "string_too_long"),
        ({"name": "Corner\x00Shop"}, "name", "string_pattern_mismatch"),
        ({"domain": ""}, "domain", "string_too_short"),
        ({"domain": "a" * 2049}, "domain", "string_too_long"),
    ],
)
async def test_create_rejects_bad_values(
    seller: Account, fields: dict[str, Any], loc: str, error_type: str
) -> None:
    response = await seller.client.post(BASE, json=STORE | fields)
    assert ["body", loc] in locs(response)
    assert {e["type"] for e in response.json()["detail"] if e["loc"] == ["body", loc]} == {
        error_type
    }


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("platform", "domain", "message"),
    [
        ("woocommerce", "localhost", "local address"),
        ("woocommerce", "shop.local", "local address"),
        ("woocommerce", "127.0.0.1", "not an IP address"),
        ("woocommerce", "http://[::1]/", "not an IP address"),
        ("woocommerce", "shop", "full domain"),
        ("woocommerce", "my shop.example.com", "can't contain spaces"),
        ("woocommerce", "shop_1.example.com", "only letters, digits"),
        ("woocommerce", "-shop.example.com", "hyphen"),
        ("woocommerce", "https://", "Enter your store's domain"),
        ("shopify", "shop.example.com", ".myshopify.com address"),
        ("shopify", "https://www.my-shop.com/admin", ".myshopify.com address"),
        ("shopify", "admin.shopify.com/store/my-shop", ".myshopify.com address"),
    ],
)
async def test_create_rejects_invalid_domains_on_the_domain_field(
    seller: Account, platform: str, domain: str, message: str
) -> None:
    response = await seller.client.post(BASE, json=STORE | {"type": platform, "domain": domain})
    [error] = response.json()["detail"]
    assert response.status_code == 422
    assert error["loc"] == ["body", "domain"]
    assert message in error["msg"]


async def test_create_accepts_a_100_character_name_and_trims_it(seller: Account) -> None:
    name = "N" * 100
    assert (await create(seller.client, name=f"  {name}  "))["name"] == name


@pytest.mark.parametrize(
    ("platform", "pasted", "domain"),
    [
        ("shopify", "HTTPS://My-Shop.myshopify.com/admin", "my-shop.myshopify.com"),
        ("shopify", "my-shop.myshopify.com.", "my-shop.myshopify.com"),
        ("woocommerce", "https://Shop.Example.com:8443/wp-admin?x=1#top", "shop.example.com"),
        ("woocommerce", "Bücher.example", "xn--bcher-kva.example"),
    ],
)
async def test_create_stores_the_normalised_domain(
    seller: Account, owner_engine: AsyncEngine, platform: str, pasted: str, domain: str
) -> None:
    created = await create(seller.client, type=platform, domain=pasted)
    assert created["domain"] == domain
    [row] = await stored(owner_engine)
    assert row["domain"] == domain


# --- update: invalid input -------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "type", "domain", "is_active"])
async def test_update_rejects_null(
    seller: Account, owned: dict[str, Any], owner_engine: AsyncEngine, field: str
) -> None:
    before = await stored(owner_engine)
    response = await seller.client.put(f"{BASE}/{owned['id']}", json={field: None})
    assert locs(response) == [["body", field]]
    assert response.json()["detail"][0]["type"] == "not_null"
    assert await stored(owner_engine) == before


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"user_id": SOMEONE_ELSE}, "user_id"),
        ({"name": "x", "user_id": SOMEONE_ELSE}, "user_id"),
        ({"webhook_secret": "chosen-by-the-client-1234"}, "webhook_secret"),
        ({"id": SOMEONE_ELSE}, "id"),
        ({"is_active": "maybe"}, "is_active"),
        ({"type": "magento"}, "type"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"domain": "localhost"}, "domain"),
        ({"domain": "http://10.0.0.1/"}, "domain"),
        ({"domain": ""}, "domain"),
    ],
)
async def test_update_rejects_bad_input_and_changes_nothing(
    seller: Account,
    owned: dict[str, Any],
    owner_engine: AsyncEngine,
    body: dict[str, Any],
    loc: str,
) -> None:
    before = await stored(owner_engine)
    response = await seller.client.put(f"{BASE}/{owned['id']}", json=body)
    assert locs(response) == [["body", loc]]
    assert await stored(owner_engine) == before


async def test_update_rejects_a_body_that_is_not_an_object(
    seller: Account, owned: dict[str, Any], owner_engine: AsyncEngine
) -> None:
    before = await stored(owner_engine)
    response = await seller.client.put(f"{BASE}/{owned['id']}", json=["name"])
    assert locs(response) == [["body"]]
    response = await seller.client.put(
        f"{BASE}/{owned['id']}", content=b"{", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert await stored(owner_engine) == before


async def test_type_change_revalidates_the_existing_domain(
    seller: Account, owned: dict[str, Any], owner_engine: AsyncEngine
) -> None:
    # corner.example.com is fine for WooCommerce but not a Shopify store address.
    before = await stored(owner_engine)
    response = await seller.client.put(f"{BASE}/{owned['id']}", json={"type": "shopify"})
    [error] = response.json()["detail"]
    assert response.status_code == 422
    assert error["loc"] == ["body", "domain"]
    assert ".myshopify.com" in error["msg"]
    assert await stored(owner_engine) == before


async def test_domain_change_is_checked_against_the_stored_type(
    seller: Account, owner_engine: AsyncEngine
) -> None:
    shop = await create(seller.client, type="shopify", domain="corner.myshopify.com")
    before = await stored(owner_engine)
    response = await seller.client.put(f"{BASE}/{shop['id']}", json={"domain": "corner.com"})
    [error] = response.json()["detail"]
    assert response.status_code == 422
    assert error["loc"] == ["body", "domain"]
    assert await stored(owner_engine) == before
    response = await seller.client.put(
        f"{BASE}/{shop['id']}", json={"domain": "HTTPS://Corner-2.MyShopify.com/admin"}
    )
    assert response.status_code == 200
    assert response.json()["domain"] == "corner-2.myshopify.com"


# --- duplicates ------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["corner.example.com", "HTTPS://CORNER.example.com./shop"])
async def test_connecting_the_same_store_twice_is_409(
    seller: Account, owned: dict[str, Any], owner_engine: AsyncEngine, spelling: str
) -> None:
    before = await stored(owner_engine)
    response = await seller.client.post(
        BASE, json={"name": "Copy", "type": "woocommerce", "domain": spelling}
    )
    assert (response.status_code, response.json()) == (409, TAKEN)
    assert await stored(owner_engine) == before
    # The failed transaction left nothing behind: the same caller carries on normally.
    await create(seller.client, domain="fresh.example.com")


@pytest.mark.parametrize("caller", ["other seller", "admin"], indirect=True)
async def test_another_accounts_claim_neither_blocks_nor_reveals_the_store(
    caller: Account, owned: dict[str, Any], owner_engine: AsyncEngine
) -> None:
    """Attack review, finding 5: a domain was unique across sellers, so a claim blocked the
    store's real owner and the 409 told anyone which stores were connected. Claims of one
    store are each seller's own until working credentials prove one of them."""
    response = await caller.client.post(
        BASE, json={"name": "Copy", "type": "woocommerce", "domain": owned["domain"]}
    )
    assert response.status_code == 201, response.text
    assert response.json()["user_id"] == str(caller.id)
    assert len(await stored(owner_engine)) == 2


async def test_update_to_a_domain_the_seller_already_connected_is_409(
    seller: Account, owned: dict[str, Any], owner_engine: AsyncEngine
) -> None:
    taken = await create(seller.client, domain="taken.example.com")
    before = await stored(owner_engine)
    response = await seller.client.put(
        f"{BASE}/{owned['id']}", json={"domain": "https://Taken.example.com/", "name": "New"}
    )
    assert (response.status_code, response.json()) == (409, TAKEN)
    assert await stored(owner_engine) == before
    assert taken["domain"] == "taken.example.com"


async def test_update_to_its_own_domain_is_not_a_conflict(
    seller: Account, owned: dict[str, Any]
) -> None:
    response = await seller.client.put(
        f"{BASE}/{owned['id']}", json={"domain": "HTTPS://Corner.Example.com/"}
    )
    assert response.status_code == 200
    assert response.json()["domain"] == "corner.example.com"


# --- secrets ---------------------------------------------------------------------------


async def test_admin_access_token_never_leaves_the_server(
    seller: Account, admin: Account, owned: dict[str, Any], owner_engine: AsyncEngine
) -> None:
    token = "gAAAAA-encrypted-admin-token-value"
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE public.integrations SET credentials = :token, "
                "credentials_kind = 'shopify_token', app_client_secret = :token"
            ),
            {"token": token},
        )
    responses = [
        await seller.client.get(BASE),
        await seller.client.get(f"{BASE}/{owned['id']}"),
        await seller.client.put(f"{BASE}/{owned['id']}", json={"name": "Renamed"}),
        await admin.client.get(BASE),
        await admin.client.get(f"{BASE}/{owned['id']}"),
    ]
    for response in responses:
        assert response.status_code == 200
        for secret in (token, owned["webhook_secret"], '"admin_access_token"', '"webhook_secret"'):
            assert secret not in response.text


# --- webhook URLs ----------------------------------------------------------------------


async def test_webhook_url_uses_the_request_origin_by_default(
    app: FastAPI, seller: Account
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://astra.internal:8123"
    ) as client:
        await sign_in(client, seller.email)
        created = await create(client)
        expected = f"http://astra.internal:8123/api/webhooks/order?id={created['id']}"
        assert created["webhook_url"] == expected
        read = (await client.get(f"{BASE}/{created['id']}")).json()
        assert read["webhook_url"] == expected


@pytest.mark.parametrize(
    ("public_url", "base"),
    [
        ("https://hooks.example.com", "https://hooks.example.com"),
        ("https://hooks.example.com/", "https://hooks.example.com"),
        ("https://example.com/astra/", "https://example.com/astra"),
    ],
)
async def test_webhook_url_uses_the_public_url_when_set(
    test_database: TestDatabase, seller: Account, public_url: str, base: str
) -> None:
    settings = test_database.settings.model_copy(update={"public_url": public_url})
    async with (
        running(settings) as application,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="https://internal-host"
        ) as client,
    ):
        await sign_in(client, seller.email)
        created = await create(client)
        expected = f"{base}/api/webhooks/order?id={created['id']}"
        assert created["webhook_url"] == expected
        assert (await client.get(f"{BASE}/{created['id']}")).json()["webhook_url"] == expected
        [item] = (await client.get(BASE)).json()["items"]
        assert item["webhook_url"] == expected
        updated = (await client.put(f"{BASE}/{created['id']}", json={"name": "New"})).json()
        assert updated["webhook_url"] == expected
    # Not stored: the default app still answers with its own origin.
    read = (await seller.client.get(f"{BASE}/{created['id']}")).json()
    assert read["webhook_url"] == f"http://testserver/api/webhooks/order?id={created['id']}"


# --- pagination ------------------------------------------------------------------------


async def test_pages_walk_newest_first_without_gaps_or_duplicates(seller: Account) -> None:
    created = [(await create(seller.client, domain=f"s{n}.example.com"))["id"] for n in range(7)]

    ids, sizes = await walk(seller.client, limit=3)

    assert sizes == [3, 3, 1]
    assert ids == created[::-1]


async def test_pages_break_created_at_ties_by_id(
    seller: Account, owner_engine: AsyncEngine
) -> None:
    await insert_rows(owner_engine, seller.id, 7)
    rows = await stored(owner_engine)
    assert len({row["created_at"] for row in rows}) == 1

    ids, sizes = await walk(seller.client, limit=3)

    assert sizes == [3, 3, 1]
    assert ids == [str(i) for i in sorted((row["id"] for row in rows), reverse=True)]


async def test_a_full_last_page_has_no_next_cursor(seller: Account) -> None:
    for n in range(3):
        await create(seller.client, domain=f"s{n}.example.com")
    page = (await seller.client.get(BASE, params={"limit": 3})).json()
    assert len(page["items"]) == 3
    assert page["next_cursor"] is None


async def test_limit_defaults_to_50_and_allows_up_to_200(
    seller: Account, owner_engine: AsyncEngine
) -> None:
    await insert_rows(owner_engine, seller.id, 201)

    page = (await seller.client.get(BASE)).json()
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None

    page = (await seller.client.get(BASE, params={"limit": 200})).json()
    assert len(page["items"]) == 200
    rest = (await seller.client.get(BASE, params={"cursor": page["next_cursor"]})).json()
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    assert rest["items"][0]["id"] not in {item["id"] for item in page["items"]}


async def test_pagination_is_scoped_to_the_seller(
    seller: Account, other_seller: Account, admin: Account
) -> None:
    mine: list[str] = []
    theirs: list[str] = []
    for n in range(4):
        mine.append((await create(seller.client, domain=f"mine{n}.example.com"))["id"])
        theirs.append((await create(other_seller.client, domain=f"theirs{n}.example.com"))["id"])

    assert (await walk(seller.client, limit=2))[0] == mine[::-1]
    assert (await walk(other_seller.client, limit=3))[0] == theirs[::-1]
    everyone, _ = await walk(admin.client, limit=3)
    assert everyone == [i for pair in zip(mine, theirs, strict=True) for i in pair][::-1]


async def test_a_cursor_does_not_widen_a_sellers_view(
    seller: Account, other_seller: Account, admin: Account
) -> None:
    for n in range(3):
        await create(other_seller.client, domain=f"theirs{n}.example.com")
    await create(seller.client, domain="mine.example.com")
    admin_page = (await admin.client.get(BASE, params={"limit": 1})).json()

    response = await seller.client.get(BASE, params={"cursor": admin_page["next_cursor"]})

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("limit", ["0", "-1", "201", "abc", "", "1.5"])
async def test_bad_limit_is_422(seller: Account, limit: str) -> None:
    response = await seller.client.get(BASE, params={"limit": limit})
    assert locs(response) == [["query", "limit"]]


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        _cursor("2024-01-01T00:00:00+00:00"),
        _cursor("2024-01-01T00:00:00|" + str(uuid.uuid4())),
        _cursor("yesterday|" + str(uuid.uuid4())),
        _cursor("2024-01-01T00:00:00+00:00|not-a-uuid"),
        _cursor("2024-01-01T00:00:00+00:00|a|b"),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
    ],
)
async def test_bad_cursor_is_422(seller: Account, owned: dict[str, Any], cursor: str) -> None:
    response = await seller.client.get(BASE, params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["query", "cursor"],
                "msg": "This cursor is not valid; start again from the first page.",
                "type": "value_error",
            }
        ]
    }


async def test_overlong_cursor_is_422(seller: Account) -> None:
    response = await seller.client.get(BASE, params={"cursor": "A" * 201})
    assert locs(response) == [["query", "cursor"]]


@pytest.mark.parametrize(
    "raw",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
)
async def test_cursor_outside_postgres_range_is_422(seller: Account, raw: str) -> None:
    response = await seller.client.get(BASE, params={"cursor": _cursor(f"{raw}|{uuid.uuid4()}")})
    assert response.status_code == 422


# --- OpenAPI ---------------------------------------------------------------------------


def _ref(operation: dict[str, Any], status: str) -> str:
    ref: str = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    ("path", "method", "success", "model", "errors"),
    [
        (BASE, "get", "200", "IntegrationPage", {"401", "422"}),
        (BASE, "post", "201", "IntegrationCreated", {"400", "401", "403", "409", "422"}),
        (BASE + "/{integration_id}", "get", "200", "IntegrationRead", {"401", "403", "404", "422"}),
        (
            BASE + "/{integration_id}",
            "put",
            "200",
            "IntegrationRead",
            {"400", "401", "403", "404", "409", "422"},
        ),
        (BASE + "/{integration_id}", "delete", "204", None, {"401", "403", "404", "422"}),
    ],
)
async def test_openapi_documents_models_and_error_statuses(
    anonymous: httpx.AsyncClient,
    path: str,
    method: str,
    success: str,
    model: str | None,
    errors: set[str],
) -> None:
    document = (await anonymous.get("/openapi.json")).json()
    operation = document["paths"][path][method]

    assert set(operation["responses"]) == {success} | errors
    if model is None:
        assert "content" not in operation["responses"][success]
    else:
        assert _ref(operation, success) == model
    for status in errors:
        expected = "ValidationErrorBody" if status == "422" else "ErrorBody"
        assert _ref(operation, status) == expected, status


async def test_openapi_schemas_match_the_contract(anonymous: httpx.AsyncClient) -> None:
    schemas = (await anonymous.get("/openapi.json")).json()["components"]["schemas"]

    read = set(schemas["IntegrationRead"]["properties"])
    assert read >= CONTRACT_KEYS
    assert read - CONTRACT_KEYS <= OPTIONAL_KEYS
    assert set(schemas["IntegrationCreated"]["properties"]) == read | {"webhook_secret"}
    # The admin access token is write-only: it may be sent, never read back.
    assert set(schemas["IntegrationCreate"]["properties"]) == {
        "name",
        "type",
        "domain",
        "admin_access_token",
        "credentials",
    }
    assert set(schemas["IntegrationCreate"]["required"]) == {"name", "type", "domain"}
    assert set(schemas["IntegrationUpdate"]["properties"]) == {
        "name",
        "type",
        "domain",
        "is_active",
        "admin_access_token",
        "credentials",
    }
    assert "required" not in schemas["IntegrationUpdate"]
    assert set(schemas["IntegrationPage"]["properties"]) == {"items", "next_cursor"}
    assert set(schemas["ErrorBody"]["properties"]) == {"detail"}
