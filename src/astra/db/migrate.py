"""Apply or revert migrations as the owner; the runtime role's password comes from settings."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from astra.db.urls import owner_url
from astra.settings import Settings


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["owner_url"] = owner_url(settings)
    config.attributes["app_password"] = settings.resolved_app_db_password
    # Data migrations that encrypt or decrypt secrets at rest need the key.
    config.attributes["encryption_key"] = settings.encryption_key
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)
