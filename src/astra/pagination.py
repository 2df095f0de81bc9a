"""Opaque keyset cursors over (timestamp, id), newest first."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from astra.errors import InvalidInput

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of rows, and the cursor of the next (None on the last page)."""

    rows: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, row_id = raw.split("|")
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        # In UTC, an out-of-range moment fails here rather than in the database.
        return created_at.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "This cursor is not valid; start again from the first page.",
            field="cursor",
            location="query",
        ) from None


def split_page(
    rows: list[T], limit: int, key: Callable[[T], tuple[datetime, uuid.UUID]]
) -> Page[T]:
    """`rows` were fetched with LIMIT limit + 1: one more than a page says another follows,
    and the page's last row is where it starts."""
    if len(rows) <= limit:
        return Page(rows, None)
    page = rows[:limit]
    return Page(page, encode_cursor(*key(page[-1])))
