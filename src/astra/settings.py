"""Every knob, read from the environment, each with a safe default."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASTRA_", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Path(".astra")
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    access_log: bool = True

    # The runtime role `astra_app` signs in with this; migrations set it.
    app_db_password: str | None = None
    encryption_key_value: str | None = Field(default=None, validation_alias="ASTRA_ENCRYPTION_KEY")
    # Connections per worker, all kept open: overflow connections would be opened and
    # closed again on every burst, which costs more than waiting a moment for a free one.
    db_pool_size: int = 20
    db_max_overflow: int = 0
    # Set: the runtime role connects through this transaction-pooling pooler (pgbouncer)
    # instead of DATABASE_URL's server, with no named prepared statements.
    db_pooler_url: str | None = None

    session_ttl_hours: int = 24 * 14
    secret_grace_hours: int = 24
    webhook_max_body_bytes: int = 5 * 1024 * 1024
    setup_token: str | None = None
    # Sign-in abuse limits: failed attempts (sign-in or set-up) within a sliding window,
    # shared by every worker through the database (the rule: astra.auth.limits).
    login_window_minutes: int = 15
    login_max_failures_per_account: int = 10
    login_max_failures_per_address: int = 50
    login_slowdown_after_failures: int = 10
    login_max_delay_seconds: float = 3.0

    # The job queue (astra.sync). Webhook deliveries older than this leave the delivery log.
    delivery_retention_days: int = Field(default=30, ge=1)
    # Each active integration with credentials is reconciled this often.
    sync_interval_seconds: int = Field(default=900, ge=1)
    # `astra serve` sets it (unless --no-worker): one queue worker inside each app process.
    in_process_worker: bool = False
    # Jobs one worker runs at once (`astra worker --concurrency` overrides).
    worker_concurrency: int = Field(default=4, ge=1)
    # How often an idle worker looks for jobs it was not told about: a fallback while
    # LISTEN/NOTIFY wakes it, the only way behind a transaction pooler (db_pooler_url).
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    # A worker silent this long is taken for dead and its jobs are run again elsewhere;
    # it beats every third of that.
    worker_stalled_seconds: int = Field(default=30, ge=3)
    # On shutdown, running jobs get this long to finish; then they go back to the queue.
    worker_shutdown_seconds: float = Field(default=10.0, ge=0)

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(hours=self.session_ttl_hours)

    @property
    def secure_cookies(self) -> bool:
        return bool(self.public_url and self.public_url.startswith("https://"))

    @cached_property
    def resolved_app_db_password(self) -> str:
        """The runtime role's password: configured, else generated once into the data dir."""
        if self.app_db_password:
            return self.app_db_password
        return _read_or_create_key(
            self.data_dir / "app-db-password", lambda: secrets.token_urlsafe(32)
        )

    @cached_property
    def encryption_key(self) -> bytes:
        """Fernet key for secrets at rest (the admin access token)."""
        from cryptography.fernet import Fernet

        if self.encryption_key_value:
            return self.encryption_key_value.encode()
        return _read_or_create_key(
            self.data_dir / "encryption.key", lambda: Fernet.generate_key().decode()
        ).encode()


def _read_or_create_key(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # Exclusive create: two processes starting at once agree on one value.
    try:
        with path.open("x") as handle:
            handle.write(value)
        path.chmod(0o600)
    except FileExistsError:
        return path.read_text().strip()
    return value
