"""Static files (CSS, JS, SVG) served by the app itself: no CDN, works offline."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"


class StaticAssets(StaticFiles):
    """StaticFiles that makes browsers revalidate (ETag, 304) so a new release shows at once."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


def static_files() -> StaticAssets:
    return StaticAssets(directory=STATIC_DIR)
