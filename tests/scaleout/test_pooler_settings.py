"""ASTRA_DB_POOLER_URL: the runtime role goes through the pooler with no named prepared
statements; migrations and operator commands keep the owner's direct URL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from astra.db.session import Database, begin
from astra.db.urls import APP_ROLE, app_url, owner_url
from astra.settings import Settings
from tests.conftest import TestDatabase

OWNER = "postgresql://postgres:owner-pw@db.internal:5432/astra"


def settings(tmp_path: Path, **values: str) -> Settings:
    return Settings(database_url=OWNER, data_dir=tmp_path, app_db_password="app-pw", **values)


def test_without_a_pooler_the_app_signs_in_to_the_owners_server(tmp_path: Path) -> None:
    url = app_url(settings(tmp_path))
    assert (url.host, url.port, url.database) == ("db.internal", 5432, "astra")
    assert (url.username, url.password) == (APP_ROLE, "app-pw")
    assert "prepared_statement_cache_size" not in url.query


def test_with_a_pooler_the_app_goes_through_it_and_names_no_statements(tmp_path: Path) -> None:
    configured = settings(tmp_path, db_pooler_url="postgresql://bouncer.internal:6432/astra")
    url = app_url(configured)
    assert (url.drivername, url.host, url.port) == ("postgresql+asyncpg", "bouncer.internal", 6432)
    assert (url.username, url.password) == (APP_ROLE, "app-pw")
    assert url.query["prepared_statement_cache_size"] == "0"
    # Migrations still run as the owner, straight to PostgreSQL.
    assert owner_url(configured).host == "db.internal"


async def test_behind_a_pooler_every_statement_is_unnamed(test_database: TestDatabase) -> None:
    """asyncpg's statement cache off (named statements), so no statement outlives the
    transaction that parsed it."""
    owner = test_database.owner_url
    # The server itself stands in for the pooler: this checks the connection, not pgbouncer.
    direct = URL.create(
        owner.drivername,
        host=owner.host,
        port=owner.port,
        database=owner.database,
        query=owner.query,
    )
    configured = test_database.settings.model_copy(
        update={"db_pooler_url": direct.render_as_string(hide_password=False)}
    )
    database = Database(app_url(configured))
    try:
        async with begin(database) as db:
            assert (await db.execute(text("SELECT current_user"))).scalar() == APP_ROLE
        lease, connection = await database.acquire()
        try:
            assert connection._config.statement_cache_size == 0
            # Nothing prepared under a name survives on the server connection either.
            assert await connection.fetchval("SELECT count(*) FROM pg_prepared_statements") == 0
        finally:
            await database.release(lease, connection)
    finally:
        await database.dispose()
