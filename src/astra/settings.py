"""Every knob, read from the environment, each with a safe default."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Addresses a server bound to every interface listens on: no request names them as its host.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 (names them, binds nothing)

STORE_API_URL_DEFAULT = "https://{domain}"
# Of ASTRA_SHUTDOWN_SECONDS, kept for what follows the jobs' wait: handing them back to the
# queue, unregistering the worker, closing the pools.
SHUTDOWN_MARGIN_SECONDS = 2.0


def store_host_is_the_domain(url: str) -> bool:
    """Whether calls made with the store API URL `url` go to the host a seller names."""
    authority = url.partition("://")[2]
    return authority.split("/", 1)[0].split(":", 1)[0] == "{domain}"


class Settings(BaseSettings):
    # A refused value is never echoed: passwords, keys and tokens come this way.
    model_config = SettingsConfigDict(
        env_prefix="ASTRA_", extra="ignore", hide_input_in_errors=True
    )

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
    # Request size caps. The JSON API's bodies are a few KB; stores' order webhooks get
    # more. Headers (request line included) are capped by `astra serve`'s HTTP parser.
    max_body_bytes: int = 64 * 1024
    webhook_max_body_bytes: int = 5 * 1024 * 1024
    max_header_bytes: int = 32 * 1024
    # Group commit: order webhooks arriving within this many milliseconds of the first are
    # written in one transaction (each answered once it is committed), at most
    # webhook_batch_max of them; 0: one transaction per delivery (astra.webhooks.batch).
    webhook_batch_ms: float = Field(default=2.0, ge=0, le=100)
    webhook_batch_max: int = Field(default=16, ge=1, le=1000)
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (the reverse proxy in
    # front); nobody's by default, so no client can choose the address it is limited by.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    # Host headers answered; unset: see `hosts`.
    allowed_hosts: Annotated[list[str] | None, NoDecode] = None
    setup_token: str | None = None
    # Sign-in abuse limits: failed attempts (sign-in or set-up) within a sliding window,
    # shared by every worker through the database (the rule: astra.auth.limits).
    login_window_minutes: int = 15
    login_max_failures_per_account: int = 10
    login_max_failures_per_address: int = 50
    login_slowdown_after_failures: int = 10
    login_max_delay_seconds: float = 3.0

    @field_validator("trusted_proxies", "allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        items = [item.strip() for item in value.split(",") if item.strip()]
        # ASTRA_ALLOWED_HOSTS set but empty means "not set", not "refuse every host".
        if not items and info.field_name == "allowed_hosts":
            return None
        return items

    @property
    def trusted_hosts(self) -> list[str]:
        """The Host headers answered: ASTRA_ALLOWED_HOSTS, else ASTRA_PUBLIC_URL's host and
        this machine's loopback names (plus the address served on, when it is one)."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        hosts = ["localhost", "127.0.0.1"]
        if self.host not in WILDCARD_HOSTS:
            hosts.append(self.host)
        public = urlsplit(self.public_url or "").hostname
        if public:
            hosts.append(public)
        return list(dict.fromkeys(hosts))

    # Calls to the stores' own APIs (astra.stores.net). `{domain}` is replaced by the
    # integration's domain; while it is the host, calls go only over HTTPS to public
    # addresses. A fixed host (a proxy, a test store) is called as it is.
    store_api_url: str = STORE_API_URL_DEFAULT
    store_api_timeout_seconds: float = 10.0
    store_api_max_response_bytes: int = 5 * 1024 * 1024
    # A PEM file of CAs to trust for the stores instead of the system's (a test CA).
    store_ca_bundle: Path | None = None
    # A Shopify bulk operation's result file (astra.stores.net.StoreHttp.lines): the most
    # read from it, and how long its whole download may take (each read still within
    # `store_api_timeout_seconds`, each line within `store_api_max_response_bytes`).
    store_bulk_max_bytes: int = Field(default=8 * 1024**3, ge=1)
    store_bulk_download_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("store_api_url")
    @classmethod
    def _store_api_url_names_the_domain(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or "{domain}" not in value:
            raise ValueError("must be an http(s) URL containing {domain}")
        if store_host_is_the_domain(value) and not value.startswith("https://"):
            raise ValueError("must be https when the store's domain is its host")
        return value.rstrip("/")

    # The job queue (astra.sync). Webhook deliveries older than this leave the delivery log.
    delivery_retention_days: int = Field(default=30, ge=1)
    # Each active integration with credentials is reconciled this often.
    sync_interval_seconds: int = Field(default=900, ge=1)
    # A Shopify listing of more orders than this is fetched by a bulk operation (one JSONL
    # file) instead of page by page.
    sync_bulk_threshold: int = Field(default=10_000, ge=0)
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
    # Unset: what ASTRA_SHUTDOWN_SECONDS leaves after the HTTP drain (job_shutdown_seconds).
    worker_shutdown_seconds: float | None = Field(default=None, ge=0)

    # SIGTERM to exit, at most: in-flight requests get half of it, then running jobs what
    # is left but SHUTDOWN_MARGIN_SECONDS (handing them back, closing the pools).
    shutdown_seconds: float = Field(default=20.0, ge=2)
    # /metrics: with this bearer token on the app's port, and/or on 127.0.0.1:metrics_port
    # (`astra serve --metrics-port`); neither set, metrics are off (/metrics is a 404).
    metrics_token: str | None = Field(default=None, min_length=1)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @property
    def http_shutdown_seconds(self) -> int:
        """uvicorn's timeout_graceful_shutdown: in-flight requests' time to finish."""
        return max(1, int(self.shutdown_seconds // 2))

    @property
    def job_shutdown_seconds(self) -> float:
        """A stopping worker's wait for its running jobs before it hands them back."""
        if self.worker_shutdown_seconds is not None:
            return self.worker_shutdown_seconds
        left = self.shutdown_seconds - self.http_shutdown_seconds - SHUTDOWN_MARGIN_SECONDS
        return max(0.0, left)

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
