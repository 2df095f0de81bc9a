"""Secrets at rest: Fernet (AES-128-CBC with an HMAC-SHA256 tag, a fresh IV each time) under
`Settings.encryption_key`. The database only ever holds the token text."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet


@lru_cache(maxsize=4)
def _fernet(key: bytes) -> Fernet:
    # Decoding and splitting the key once: every webhook delivery decrypts its secrets.
    return Fernet(key)


def encrypt(key: bytes, plaintext: str) -> str:
    return _fernet(key).encrypt(plaintext.encode()).decode("ascii")


def decrypt(key: bytes, token: str) -> str:
    """The plaintext; raises cryptography.fernet.InvalidToken for another key or a changed token."""
    return _fernet(key).decrypt(token.encode("ascii")).decode()


def encrypt_optional(key: bytes, plaintext: str | None) -> str | None:
    return None if plaintext is None else encrypt(key, plaintext)


def decrypt_optional(key: bytes, token: str | None) -> str | None:
    return None if token is None else decrypt(key, token)
