"""Webhook signatures as Shopify and WooCommerce compute them: base64(HMAC-SHA256(secret, body)).

Pure functions over bytes; nothing here touches the database or logs.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable


def sign(secret: str, body: bytes) -> str:
    """The signature header value a store sends for `body` when it holds `secret`."""
    return base64.b64encode(hmac.digest(secret.encode(), body, "sha256")).decode("ascii")


def signature_matches(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time comparison of the sent header with the expected one.

    The base64 text is compared, not the decoded bytes: base64 decoders accept several
    spellings of the same bytes, and only the exact spelling the platform sends is valid.
    """
    expected = sign(secret, body).encode("ascii")
    # Header values arrive as latin-1 text; encoding back to bytes never fails.
    return hmac.compare_digest(expected, signature.encode("latin-1"))


def verify(secrets: Iterable[str], body: bytes, signature: str | None) -> bool:
    """True when `signature` was made over `body` with any of `secrets`."""
    if not signature:
        return False
    return any(signature_matches(secret, body, signature) for secret in secrets)
