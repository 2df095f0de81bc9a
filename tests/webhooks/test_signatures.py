"""Signature verification on its own, including a property test over single-byte changes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from astra.webhooks.signatures import sign, signature_matches, verify
from testkit.stores import hmac_b64

SECRET = "Zp6B7q1c0m9E4r2T8y3U5i7O1p0A2s4D"

# Shopify's documentation example shape: a known body, key and the header it produces.
BODY = b'{"id":820982911946154508,"email":"jon@example.com","total_price":"403.00"}'


def test_sign_is_base64_hmac_sha256_over_the_raw_body() -> None:
    assert sign(SECRET, BODY) == hmac_b64(SECRET, BODY)
    assert len(sign(SECRET, BODY)) == 44  # 32 bytes in base64


def test_matches_only_the_right_secret() -> None:
    header = hmac_b64(SECRET, BODY)
    assert signature_matches(SECRET, BODY, header)
    assert not signature_matches(SECRET + "x", BODY, header)


def test_verify_accepts_any_listed_secret_and_nothing_else() -> None:
    header = hmac_b64("previous-secret-0123456789", BODY)
    assert verify([SECRET, "previous-secret-0123456789"], BODY, header)
    assert not verify([SECRET], BODY, header)
    assert not verify([], BODY, header)
    assert not verify([SECRET], BODY, None)
    assert not verify([SECRET], BODY, "")


def test_other_spellings_of_the_same_bytes_do_not_verify() -> None:
    """Base64 decoders forgive missing padding and stray characters; we do not."""
    header = hmac_b64(SECRET, BODY)
    for variant in (header.rstrip("="), header + "\n", " " + header, header.lower()):
        assert not signature_matches(SECRET, BODY, variant)


def test_non_ascii_signature_is_simply_wrong() -> None:
    assert not signature_matches(SECRET, BODY, "é" * 44)


@settings(max_examples=300)
@given(
    secret=st.text(min_size=16, max_size=64),
    body=st.binary(min_size=1, max_size=2048),
    data=st.data(),
)
def test_any_single_byte_change_of_the_body_fails(
    secret: str, body: bytes, data: st.DataObject
) -> None:
    header = sign(secret, body)
    assert verify([secret], body, header)
    index = data.draw(st.integers(0, len(body) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([new_byte]) + body[index + 1 :]

    assert not verify([secret], changed, header)


@settings(max_examples=300)
@given(secret=st.text(min_size=16, max_size=64), body=st.binary(max_size=2048), data=st.data())
def test_any_single_byte_change_of_the_signature_fails(
    secret: str, body: bytes, data: st.DataObject
) -> None:
    header = sign(secret, body).encode("latin-1")
    index = data.draw(st.integers(0, len(header) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != header[index]))
    changed = (header[:index] + bytes([new_byte]) + header[index + 1 :]).decode("latin-1")

    assert not verify([secret], body, changed)
