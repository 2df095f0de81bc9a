"""Which database, and as whom: the owner (migrations) and the runtime role (the app)."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from astra.settings import Settings

APP_ROLE = "astra_app"


def owner_url(settings: Settings) -> URL:
    """The URL migrations and operator commands use: DATABASE_URL, else the embedded server."""
    raw = settings.database_url
    if raw is None:
        from astra.db.embedded import embedded_database_url

        raw = embedded_database_url(settings.data_dir)
    return make_url(raw).set(drivername="postgresql+asyncpg")


def app_url(settings: Settings) -> URL:
    """The same database as the owner URL, signed in as the runtime role.

    With ASTRA_DB_POOLER_URL, the runtime role goes through that pooler instead. A pooler in
    transaction mode hands each transaction to any server connection, so a statement named
    in one may not exist in the next: `prepared_statement_cache_size=0` turns named
    statements off (the engine reads it; see `Database`). Migrations still use the owner URL.
    """
    if settings.db_pooler_url is None:
        return owner_url(settings).set(
            username=APP_ROLE, password=settings.resolved_app_db_password
        )
    pooler = make_url(settings.db_pooler_url)
    return pooler.set(
        drivername="postgresql+asyncpg",
        username=pooler.username or APP_ROLE,
        password=pooler.password or settings.resolved_app_db_password,
    ).update_query_dict({"prepared_statement_cache_size": "0"})
