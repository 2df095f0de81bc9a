"""Static files (CSS, JS, SVG) served by the app itself: no CDN, works offline."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.datastructures import Headers
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import ASGIApp, Scope

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"
# Not left to the mimetypes guess, which differs between Pythons and /etc/mime.types.
_MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class StaticAssets(StaticFiles):
    """StaticFiles that makes browsers revalidate (ETag, 304) so a new release shows at once.
    The files go out as they are written (static_files() compresses them on the way)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = FileResponse(
            full_path,
            status_code=status_code,
            headers={"Cache-Control": "no-cache"},
            media_type=_MEDIA_TYPES.get(Path(full_path).suffix),
            stat_result=stat_result,
        )
        # Starlette's own rule: lists of tags, weak tags and "*" are understood as well.
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response


def static_files() -> ASGIApp:
    # Gzip here only: stylesheets and scripts shrink to a third or less and hold nothing
    # private. Pages and API responses stay uncompressed, as they mix user text with secrets
    # (BREACH).
    return GZipMiddleware(StaticAssets(directory=STATIC_DIR))
