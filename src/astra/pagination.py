"""Opaque keyset cursors over (created_at, id), newest first."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

from astra.errors import InvalidInput


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
