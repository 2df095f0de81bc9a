"""Turn whatever a seller pastes into a store's bare hostname, and check it per platform."""

from __future__ import annotations

import re
from collections.abc import Callable

import idna

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_PORT = re.compile(r"[0-9]*")
_LDH_LABEL = re.compile(r"[a-z0-9-]+")
_MYSHOPIFY = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
# WHATWG's "ends in a number" rule: browsers read such a host as IPv4 (127.1, 0x7f.1).
_NUMERIC_TLD = re.compile(r"[0-9]+|0x[0-9a-f]*")
_LOCAL_TLDS = frozenset({"localhost", "local", "internal"})
# str.isspace(), as a scan in C (both are Py_UNICODE_ISSPACE).
_SPACE = re.compile(r"\s")

_EMPTY = "Enter your store's domain, like my-shop.myshopify.com."
_IP_ADDRESS = "Enter your store's domain name, not an IP address."


class InvalidDomain(ValueError):
    """The input can't be used as a store domain; str() is a sentence to show the user."""


def _not_a_domain(reason: str) -> InvalidDomain:
    return InvalidDomain(f"That doesn't look like a domain: {reason}.")


def _extract_host(raw: str) -> str:
    """Cut a pasted URL down to its host part, still in the user's spelling."""
    text = raw.strip()
    if _SPACE.search(text):
        raise InvalidDomain(
            "A domain can't contain spaces. Enter just the address, like shop.example.com."
        )
    text = _SCHEME.sub("", text, count=1)
    authority = re.split(r"[/?#]", text, maxsplit=1)[0]
    # Browsers treat everything up to the last "@" as userinfo.
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        raise InvalidDomain(_IP_ADDRESS)
    host, _, port = host.partition(":")
    if not _PORT.fullmatch(port):
        raise _not_a_domain("the part after the colon should be a port number")
    return host


def _to_ascii_label(label: str) -> str:
    if not label:
        raise _not_a_domain("it has an empty part between dots")
    # Plain ASCII labels are checked here first so the common mistakes get a specific message.
    if label.isascii():
        if len(label) > 63:
            raise _not_a_domain("each part between dots must be at most 63 characters")
        if label.startswith("-") or label.endswith("-"):
            raise _not_a_domain("a part can't start or end with a hyphen")
        if not _LDH_LABEL.fullmatch(label):
            raise _not_a_domain("use only letters, digits, hyphens and dots")
        if label[2:4] != "--":
            # What IDNA makes of a lowercase letters-digits-hyphens label with no A-label
            # prefix (xn--) or other hyphens in 3rd and 4th place: the label itself.
            return label
    try:
        return idna.alabel(label).decode("ascii")
    except idna.IDNAError as exc:
        raise _not_a_domain(f"“{label}” isn't allowed in a domain name") from exc


def normalize_domain(raw: str) -> str:
    """Return the lowercase ASCII (punycode) hostname in `raw`, a bare host or a whole URL."""
    try:
        # UTS46 lowercases and folds look-alikes (full-width letters and dots) before IDNA 2008;
        # of ASCII it maps each character to its lowercase, and nothing else.
        host = _extract_host(raw)
        host = (
            host.lower()
            if host.isascii()
            else idna.uts46_remap(host, std3_rules=False, transitional=False)
        )
    except idna.IDNAError as exc:
        raise _not_a_domain("it contains characters that aren't allowed in a domain name") from exc
    # A trailing dot is the DNS root: same host, so drop it to keep one spelling per store.
    host = host.removesuffix(".")
    if not host:
        raise InvalidDomain(_EMPTY)
    domain = ".".join(_to_ascii_label(label) for label in host.split("."))
    if len(domain) > 253:
        raise _not_a_domain("it's longer than 253 characters")
    return domain


def _check_shopify(domain: str) -> None:
    # Webhooks and the Admin API identify a store by its permanent address, never a custom domain.
    if not _MYSHOPIFY.fullmatch(domain):
        raise InvalidDomain(
            "Use your store's permanent .myshopify.com address "
            "(for example my-shop.myshopify.com), not a custom domain."
        )


def _check_woocommerce(domain: str) -> None:
    # Shopify hosts every *.myshopify.com store: such an address is never a WooCommerce
    # site, and letting it be claimed as one would block the Shopify store's real owner.
    if domain == "myshopify.com" or domain.endswith(".myshopify.com"):
        raise InvalidDomain(
            "That's a Shopify store's address. Choose Shopify as the platform to connect it."
        )
    # We call the store over the internet, so it must have a public name.
    tld = domain.rpartition(".")[2]
    if tld in _LOCAL_TLDS:
        raise InvalidDomain(
            "That's a local address. Enter the public domain your store is reachable at, "
            "like shop.example.com."
        )
    if _NUMERIC_TLD.fullmatch(tld):
        raise InvalidDomain(_IP_ADDRESS)
    if "." not in domain:
        raise InvalidDomain(
            "Enter your store's full domain, including its ending, like shop.example.com."
        )


_PLATFORM_CHECKS: dict[str, Callable[[str], None]] = {
    "shopify": _check_shopify,
    "woocommerce": _check_woocommerce,
}


def validate_domain(platform: str, raw: str) -> str:
    """Normalise `raw` and apply `platform`'s rule; return the domain or raise InvalidDomain."""
    try:
        check = _PLATFORM_CHECKS[platform]
    except KeyError:
        raise ValueError(f"unknown platform: {platform!r}") from None
    domain = normalize_domain(raw)
    check(domain)
    return domain
