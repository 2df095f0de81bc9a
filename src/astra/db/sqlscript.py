"""Run a multi-statement SQL script inside a migration.

SQLAlchemy's asyncpg adapter prepares every statement, and a prepared statement holds
one command; asyncpg runs a whole script through the simple-query protocol instead.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.util import await_


def run_script(sql: str) -> None:
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    await_(driver_connection.execute(sql))
