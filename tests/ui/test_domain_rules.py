"""The browser's as-you-type domain check (web/static/js/domains.js) against the API's
(integrations/domains.py): the same verdict, the same normalised domain, the same
sentence, for the API's own test cases and a few thousand more."""

from __future__ import annotations

import random
from typing import Any

import pytest

from astra.integrations.schemas import IntegrationCreate
from astra.stores.domains import InvalidDomain, validate_domain
from tests.stores.test_domains import CASES
from tests.ui.conftest import Session

pytestmark = pytest.mark.ui

# Names people really use, and the Unicode corners the IDNA rules care about. (Characters
# newer than Python's Unicode database are left out: the server refuses those, the browser
# knows them; the API's 422 then shows under the field.)
INTERNATIONAL = [
    "münchen.de",
    "MÜNCHEN.DE",
    "ΑΘΗΝΑ.gr",
    "пример.рф",
    "例子.中国",
    "日本語.jp",
    "한국.kr",
    "العربية.example",
    "עברית.example",
    "café.example.com",
    "straße.example",
    "☃.com",
    "xn--n3h.com",
    "xn--bcher-kva.example",
    "xn--zz.example",
    "shop\u00ad.example.com",
    "shop\u200b.example.com",
    "\uff53\uff48\uff4f\uff50\uff0e\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
    "émoji😀.com",
    "a\u0301b.example",
    "\u0301ab.example",
    "ǅ.example",
    "ﬁ.example",
    "①.example",
    "x\u200dy.example",
    "\u1100\u1161.example",
    "ᏹ.example",
    "\u13ee.example",
    "ꭰ.example",
    "BÜCHER.myshopify.com",
    "é" * 70 + ".example",
    "ü" * 40 + ".example",
    "ア\u30fbイ.example",
    "a\u30fbb.example",
    "٠١٢.example",
    "\u05d0\u05d1.example",
    "\u05d0a.example",
    "1\u05d0.example",
]

PIECES = [
    "shop", "my-shop", "a", "z9", "-", "--", ".", "..", "_", "@", ":", ":443", ":x", "/", "?",
    "#", "[", "]", " ", "\t", "http://", "HTTPS://", "ftp://", ".com", ".myshopify.com",
    ".MyShopify.COM", ".local", ".localhost", ".internal", ".1", ".0x1f", "127", "0", "xn--",
    "bcher-kva", "x" * 30, "$", "%", "A",
]  # fmt: skip


def pasted_like(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 7)))


def expected(platform: str, raw: str) -> dict[str, Any]:
    try:
        return {"ok": True, "domain": validate_domain(platform, raw)}
    except InvalidDomain as exc:
        return {"ok": False, "message": str(exc)}


def corpus() -> list[tuple[str, str]]:
    rng = random.Random(20261125)
    cases = [(platform, raw) for platform, raw, _ in CASES]
    for platform in ("shopify", "woocommerce"):
        cases += [(platform, raw) for raw in INTERNATIONAL]
        cases += [(platform, pasted_like(rng)) for _ in range(2000)]
    return cases


async def test_the_browser_checks_domains_exactly_as_the_api_does(ui: Session) -> None:
    await ui.open("/login")
    cases = corpus()
    results = await ui.page.evaluate(
        """async (cases) => {
            const { validateDomain } = await import("/static/js/domains.js");
            return cases.map(([platform, raw]) => validateDomain(platform, raw));
        }""",
        cases,
    )
    mismatches = [
        (platform, raw, got, want)
        for (platform, raw), got in zip(cases, results, strict=True)
        if got != (want := expected(platform, raw))
    ]
    assert mismatches == []


NAMES = [
    "Shop",
    "  Shop  ",
    "",
    "   ",
    "\t\n",
    "x" * 100,
    "x" * 101,
    "é" * 100,
    "😀" * 100,
    "😀" * 101,
]


async def test_the_browser_checks_store_names_as_the_api_does(ui: Session) -> None:
    await ui.open("/login")
    results = await ui.page.evaluate(
        """async (names) => {
            const { validateStoreName } = await import("/static/js/domains.js");
            return names.map((name) => validateStoreName(name).ok);
        }""",
        NAMES,
    )
    for name, accepted in zip(NAMES, results, strict=True):
        try:
            IntegrationCreate(name=name, type="shopify", domain="shop.myshopify.com")
        except ValueError:
            assert not accepted, name
        else:
            assert accepted, name
