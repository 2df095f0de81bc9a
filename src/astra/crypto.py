"""Secrets at rest: Fernet (AES-128-CBC with an HMAC-SHA256 tag, a fresh IV each time) under
`Settings.encryption_key`. The database only ever holds the token text."""

from __future__ import annotations

from cryptography.fernet import Fernet


def encrypt(key: bytes, plaintext: str) -> str:
    return Fernet(key).encrypt(plaintext.encode()).decode("ascii")


def decrypt(key: bytes, token: str) -> str:
    """The plaintext; raises cryptography.fernet.InvalidToken for another key or a changed token."""
    return Fernet(key).decrypt(token.encode("ascii")).decode()
