"""Static files (CSS, JS, SVG) served by the app itself: no CDN, works offline."""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"
_MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"^[ \t]*//[^\n]*\n", re.M)
_INDENT = re.compile(r"^[ \t]+", re.M)
_BLANK_LINES = re.compile(r"\n{2,}")


def lean(text: str, suffix: str) -> str:
    """The source without its comments and indentation: what a browser needs of it.

    The files stay commented for their readers; the page budget (HTML + CSS + JS under
    100 KB) counts what is sent. Only whole-line `//` comments go from scripts, so a
    `//` inside a string or a URL is never touched."""
    text = _BLOCK_COMMENT.sub("", text) if suffix == ".css" else _LINE_COMMENT.sub("", text)
    return _BLANK_LINES.sub("\n", _INDENT.sub("", text)).lstrip()


@lru_cache(maxsize=64)
def _lean_file(path: str, mtime_ns: int) -> tuple[bytes, str]:
    body = lean(Path(path).read_text(encoding="utf-8"), Path(path).suffix).encode()
    return body, f'"{hashlib.sha256(body).hexdigest()[:20]}"'


class StaticAssets(StaticFiles):
    """StaticFiles that makes browsers revalidate (ETag, 304) so a new release shows at once,
    and sends stylesheets and scripts lean."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        suffix = Path(full_path).suffix
        if suffix not in _MEDIA_TYPES:
            response = super().file_response(full_path, stat_result, scope, status_code)
            response.headers["Cache-Control"] = "no-cache"
            return response
        body, etag = _lean_file(str(full_path), stat_result.st_mtime_ns)
        headers = {"Cache-Control": "no-cache", "ETag": etag}
        # Starlette's own rule: lists of tags, weak tags and "*" are understood as well.
        if self.is_not_modified(Headers(headers), Headers(scope=scope)):
            return Response(status_code=304, headers=headers)
        return Response(body, status_code, headers=headers, media_type=_MEDIA_TYPES[suffix])


def static_files() -> StaticAssets:
    return StaticAssets(directory=STATIC_DIR)
