"""Stylesheets and scripts go out exactly as written, and revalidate with their ETag."""

from __future__ import annotations

import httpx
import pytest

from astra.web.assets import STATIC_DIR


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("astra.css", "text/css; charset=utf-8"),
        ("js/integrations.js", "text/javascript; charset=utf-8"),
        ("js/ui.js", "text/javascript; charset=utf-8"),
    ],
)
async def test_assets_are_sent_as_written(
    anonymous: httpx.AsyncClient, name: str, media_type: str
) -> None:
    # Comments, indentation and multi-line template literals included: nothing rewrites them.
    response = await anonymous.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.content == (STATIC_DIR / name).read_bytes()


async def test_assets_answer_304_to_their_etag(anonymous: httpx.AsyncClient) -> None:
    first = await anonymous.get("/static/astra.css")
    assert first.status_code == 200
    again = await anonymous.get(
        "/static/astra.css", headers={"if-none-match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["cache-control"] == "no-cache"


async def test_a_list_or_weak_form_of_the_etag_is_also_304(anonymous: httpx.AsyncClient) -> None:
    etag = (await anonymous.get("/static/js/ui.js")).headers["etag"]
    for sent in (f'"other", {etag}', f"W/{etag}"):
        again = await anonymous.get("/static/js/ui.js", headers={"if-none-match": sent})
        assert again.status_code == 304, sent
    changed = await anonymous.get("/static/js/ui.js", headers={"if-none-match": '"other"'})
    assert changed.status_code == 200
