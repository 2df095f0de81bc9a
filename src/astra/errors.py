"""Errors the service layer raises; `astra.http.install_error_handlers` turns each into its
HTTP status."""

from __future__ import annotations

# How long clients and stores are asked to wait while the database is unavailable.
OUTAGE_RETRY_SECONDS = 5


class AstraError(Exception):
    status_code = 400
    # Seconds the client should wait before trying again (sent as Retry-After), if any.
    retry_after: int | None = None
    # Machine-readable keys the error body carries beside `detail`.
    extra: dict[str, str] = {}  # noqa: RUF012 (never mutated: instances assign their own)

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotAuthenticated(AstraError):
    status_code = 401


class Forbidden(AstraError):
    status_code = 403


class NotFound(AstraError):
    status_code = 404


class Conflict(AstraError):
    status_code = 409


class InvalidInput(AstraError):
    """A value that passed parsing but breaks a rule only the service can check; `field`
    and `location` ("body", "query") name it, as Pydantic's errors do."""

    status_code = 422

    def __init__(self, detail: str, *, field: str, location: str = "body") -> None:
        super().__init__(detail)
        self.field = field
        self.location = location


class TooManyRequests(AstraError):
    """Over an abuse limit; the client may try again after `retry_after` seconds."""

    status_code = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
