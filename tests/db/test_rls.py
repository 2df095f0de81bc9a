"""Row-level security on its own: the app's runtime role, no WHERE clauses, no app code."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from astra.db.urls import APP_ROLE, app_url
from tests.conftest import TestDatabase, make_user

SET_CLAIMS = text("SELECT set_config('request.jwt.claims', :claims, true)")


@pytest.fixture
async def app_engine(test_database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(app_url(test_database.settings), pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


async def act_as(connection: AsyncConnection, user_id: uuid.UUID) -> None:
    await connection.execute(SET_CLAIMS, {"claims": json.dumps({"sub": str(user_id)})})


async def insert_integration(engine: AsyncEngine, user_id: uuid.UUID, domain: str) -> uuid.UUID:
    async with engine.begin() as connection:
        await act_as(connection, user_id)
        row_id = (
            await connection.execute(
                text(
                    "INSERT INTO integrations (user_id, name, type, domain, webhook_secret) "
                    "VALUES (:user_id, 'Shop', 'woocommerce', :domain, repeat('s', 32)) RETURNING id"
                ),
                {"user_id": user_id, "domain": domain},
            )
        ).scalar_one()
    assert isinstance(row_id, uuid.UUID)
    return row_id


@pytest.fixture
async def world(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, password_hash: str
) -> dict[str, uuid.UUID]:
    alice = await make_user(owner_engine, "alice@example.com", "seller", password_hash)
    bob = await make_user(owner_engine, "bob@example.com", "seller", password_hash)
    admin = await make_user(owner_engine, "root@example.com", "admin", password_hash)
    return {
        "alice": alice,
        "bob": bob,
        "admin": admin,
        "alice_shop": await insert_integration(app_engine, alice, "alice.example.com"),
        "alice_shop_2": await insert_integration(app_engine, alice, "alice2.example.com"),
        "bob_shop": await insert_integration(app_engine, bob, "bob.example.com"),
    }


async def test_seller_sees_only_own_rows_without_any_where_clause(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    async with app_engine.begin() as connection:
        await act_as(connection, world["alice"])
        ids = set((await connection.execute(text("SELECT id FROM integrations"))).scalars())
        users = list((await connection.execute(text("SELECT email FROM users"))).scalars())
    assert ids == {world["alice_shop"], world["alice_shop_2"]}
    assert users == ["alice@example.com"]


async def test_update_and_delete_of_another_sellers_row_touch_nothing(
    app_engine: AsyncEngine, owner_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    async with app_engine.begin() as connection:
        await act_as(connection, world["alice"])
        updated = await connection.execute(
            text("UPDATE integrations SET name = 'stolen' WHERE id = :id"),
            {"id": world["bob_shop"]},
        )
        deleted = await connection.execute(
            text("DELETE FROM integrations WHERE id = :id"), {"id": world["bob_shop"]}
        )
        assert (updated.rowcount, deleted.rowcount) == (0, 0)
    async with owner_engine.connect() as connection:
        name = (
            await connection.execute(
                text("SELECT name FROM integrations WHERE id = :id"), {"id": world["bob_shop"]}
            )
        ).scalar_one()
    assert name == "Shop"


async def test_seller_cannot_give_own_row_to_someone_else(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    with pytest.raises(DBAPIError, match="row-level security"):
        async with app_engine.begin() as connection:
            await act_as(connection, world["alice"])
            await connection.execute(
                text("UPDATE integrations SET user_id = :bob WHERE id = :id"),
                {"bob": world["bob"], "id": world["alice_shop"]},
            )


async def test_insert_with_another_user_id_fails(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    with pytest.raises(DBAPIError, match="row-level security"):
        async with app_engine.begin() as connection:
            await act_as(connection, world["alice"])
            await connection.execute(
                text(
                    "INSERT INTO integrations (user_id, name, type, domain, webhook_secret) "
                    "VALUES (:bob, 'Shop', 'woocommerce', 'evil.example.com', repeat('s', 32))"
                ),
                {"bob": world["bob"]},
            )


async def test_no_context_sees_nothing(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    async with app_engine.connect() as connection:
        integrations = (
            await connection.execute(text("SELECT count(*) FROM integrations"))
        ).scalar()
        users = (await connection.execute(text("SELECT count(*) FROM users"))).scalar()
        sessions = (await connection.execute(text("SELECT count(*) FROM sessions"))).scalar()
    assert (integrations, users, sessions) == (0, 0, 0)


async def test_claims_naming_an_unknown_user_see_nothing(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    async with app_engine.begin() as connection:
        await act_as(connection, uuid.uuid4())
        count = (await connection.execute(text("SELECT count(*) FROM integrations"))).scalar()
    assert count == 0


async def test_admin_context_sees_all(app_engine: AsyncEngine, world: dict[str, uuid.UUID]) -> None:
    async with app_engine.begin() as connection:
        await act_as(connection, world["admin"])
        ids = set((await connection.execute(text("SELECT id FROM integrations"))).scalars())
        user_count = (await connection.execute(text("SELECT count(*) FROM users"))).scalar()
    assert ids == {world["alice_shop"], world["alice_shop_2"], world["bob_shop"]}
    assert user_count == 3


async def test_claiming_admin_in_the_claims_grants_nothing(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    claims = json.dumps({"sub": str(world["alice"]), "role": "admin", "app_role": "admin"})
    async with app_engine.begin() as connection:
        await connection.execute(SET_CLAIMS, {"claims": claims})
        count = (await connection.execute(text("SELECT count(*) FROM integrations"))).scalar()
    assert count == 2


async def test_runtime_role_has_no_way_around_rls(app_engine: AsyncEngine) -> None:
    async with app_engine.connect() as connection:
        role = (
            await connection.execute(
                text(
                    "SELECT current_user AS name, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb "
                    "FROM pg_roles WHERE rolname = current_user"
                )
            )
        ).one()
        owned_tables = (
            await connection.execute(
                text("SELECT count(*) FROM pg_tables WHERE tableowner = current_user")
            )
        ).scalar()
        # Every role this one could SET ROLE to, directly or through membership chains.
        reachable_privileged = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM pg_roles r "
                    "WHERE r.rolname <> current_user "
                    "AND pg_has_role(current_user, r.oid, 'MEMBER') "
                    "AND (r.rolsuper OR r.rolbypassrls)"
                )
            )
        ).scalar()
        memberships = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
                    "WHERE r.rolname = current_user"
                )
            )
        ).scalar()
        forced = (
            await connection.execute(
                text(
                    "SELECT bool_and(relrowsecurity AND relforcerowsecurity) FROM pg_class "
                    "WHERE relname IN ('users', 'sessions', 'integrations') AND relkind = 'r'"
                )
            )
        ).scalar()
    assert role.name == APP_ROLE
    assert not (role.rolsuper or role.rolbypassrls or role.rolcreaterole or role.rolcreatedb)
    assert owned_tables == 0
    assert reachable_privileged == 0
    assert memberships == 0
    assert forced is True


async def test_runtime_role_cannot_set_role_to_the_owner(
    app_engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.connect() as connection:
        owner = (await connection.execute(text("SELECT current_user"))).scalar_one()
    for target in (owner, "astra_definer"):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with app_engine.connect() as connection:
                await connection.execute(text(f'SET ROLE "{target}"'))


async def test_runtime_role_cannot_alter_policies_or_tables(app_engine: AsyncEngine) -> None:
    with pytest.raises(DBAPIError, match="must be owner"):
        async with app_engine.begin() as connection:
            await connection.execute(text("ALTER TABLE integrations DISABLE ROW LEVEL SECURITY"))


async def test_context_is_transaction_local(
    app_engine: AsyncEngine, world: dict[str, uuid.UUID]
) -> None:
    """One pooled connection, two users one after the other: nothing carries over."""
    async with app_engine.connect() as connection:
        pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar()
        await connection.commit()
        async with connection.begin():
            await act_as(connection, world["alice"])
            first = (await connection.execute(text("SELECT count(*) FROM integrations"))).scalar()
        after = (await connection.execute(text("SELECT count(*) FROM integrations"))).scalar()
        await connection.commit()
        async with connection.begin():
            await act_as(connection, world["bob"])
            second = (await connection.execute(text("SELECT count(*) FROM integrations"))).scalar()
        same_pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar()
    assert (first, after, second) == (2, 0, 1)
    assert pid == same_pid


async def test_definer_functions_run_with_an_empty_search_path(app_engine: AsyncEngine) -> None:
    async with app_engine.connect() as connection:
        insecure = (
            await connection.execute(
                text(
                    "SELECT array_agg(proname) FROM pg_proc "
                    "WHERE prosecdef AND pronamespace = 'public'::regnamespace "
                    "AND NOT coalesce(proconfig @> ARRAY['search_path=\"\"'], false)"
                )
            )
        ).scalar()
    assert insecure is None
