"""Stylesheets and scripts are sent lean, and still revalidate with their ETag."""

from __future__ import annotations

import httpx

from astra.web.assets import lean


def test_lean_drops_comments_and_indentation_but_not_strings() -> None:
    script = (
        "// a comment line\n"
        "export function f() {\n"
        '    const url = "https://example.com/path"; // stays: not a whole line\n'
        "\n\n"
        "    return url;\n"
        "}\n"
    )
    assert lean(script, ".js") == (
        "export function f() {\n"
        'const url = "https://example.com/path"; // stays: not a whole line\n'
        "return url;\n"
        "}\n"
    )
    assert lean("/* why */\n.card {\n  color: red; /* note */\n}\n", ".css") == (
        ".card {\ncolor: red; \n}\n"
    )


async def test_assets_are_lean_and_answer_304_to_their_etag(anonymous: httpx.AsyncClient) -> None:
    first = await anonymous.get("/static/astra.css")
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/css; charset=utf-8"
    assert "/*" not in first.text
    again = await anonymous.get(
        "/static/astra.css", headers={"if-none-match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_a_list_or_weak_form_of_the_etag_is_also_304(anonymous: httpx.AsyncClient) -> None:
    etag = (await anonymous.get("/static/js/ui.js")).headers["etag"]
    for sent in (f'"other", {etag}', f"W/{etag}"):
        again = await anonymous.get("/static/js/ui.js", headers={"if-none-match": sent})
        assert again.status_code == 304, sent
    changed = await anonymous.get("/static/js/ui.js", headers={"if-none-match": '"other"'})
    assert changed.status_code == 200
