"""The page's Trusted Types policy in real Chromium: HTML from a string reaches the page only
as a card fragment the server sent; every other way of parsing a string still throws."""

from __future__ import annotations

import pytest

from tests.ui.conftest import Session

pytestmark = pytest.mark.ui

SINKS = """() => {
    const tries = {
        innerHTML: () => { document.createElement("div").innerHTML = "<b>x</b>"; },
        outerHTML: () => { document.getElementById("cards").outerHTML = "<b>x</b>"; },
        insertAdjacentHTML: () => document.body.insertAdjacentHTML("beforeend", "<b>x</b>"),
        DOMParser: () => new DOMParser().parseFromString("<b>x</b>", "text/html"),
        createContextualFragment: () => document.createRange().createContextualFragment("<b>x</b>"),
        setHTMLUnsafe: () => document.createElement("div").setHTMLUnsafe("<b>x</b>"),
        scriptText: () => { document.createElement("script").textContent = "alert(1)"; },
        // The one name allowed is taken by ui.js; no other name, nor a default policy.
        samePolicyAgain: () => trustedTypes.createPolicy("astra-fragment", { createHTML: (s) => s }),
        otherPolicy: () => trustedTypes.createPolicy("mine", { createHTML: (s) => s }),
        defaultPolicy: () => trustedTypes.createPolicy("default", { createHTML: (s) => s }),
    };
    const outcome = {};
    for (const [name, attempt] of Object.entries(tries)) {
        try { attempt(); outcome[name] = "allowed"; } catch (error) { outcome[name] = error.name; }
    }
    return outcome;
}"""


async def test_strings_still_cannot_become_html(ui: Session, seller_email: str) -> None:
    # Chromium reports each refusal on the console as well.
    ui.expected_errors += ["TrustedHTML", "TrustedScript", "TrustedTypePolicy"]
    await ui.sign_in(seller_email)
    await ui.open()
    outcome = await ui.page.evaluate(SINKS)
    assert outcome == dict.fromkeys(outcome, "TypeError")
    assert len(outcome) == 10
    assert await ui.page.locator("b", has_text="x").count() == 0


async def test_only_the_apps_fragment_routes_are_parsed(ui: Session, seller_email: str) -> None:
    await ui.sign_in(seller_email)
    created = await ui.create_store("Linen & Co", "shopify", "linen-and-co.myshopify.com")
    await ui.open()
    result = await ui.page.evaluate(
        """async (id) => {
            const { fragment } = await import("/static/js/ui.js");
            const refused = [];
            for (const path of ["/login", "/api/integrations", "//evil.example/settings/integrations/cards",
                                "https://evil.example/settings/integrations/cards/1"]) {
                try { await fragment(path); } catch (error) { refused.push(path); }
            }
            const card = await fragment(`/settings/integrations/cards/${id}`);
            const article = card.data.firstElementChild;
            return { refused, ok: card.ok, id: article.dataset.id, name: article.dataset.name };
        }""",
        created["id"],
    )
    assert len(result.pop("refused")) == 4
    assert result == {"ok": True, "id": created["id"], "name": "Linen & Co"}
