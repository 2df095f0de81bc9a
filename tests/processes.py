"""Helpers for tests that run real servers as subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ask the process to stop; kill it if it has not within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_serve(
    env: dict[str, str], port: int, log_path: Path, *, workers: int = 1
) -> subprocess.Popen[bytes]:
    """`astra serve` on HOST:port in a subprocess, its output in `log_path`."""
    command = [sys.executable, "-m", "astra.cli", "serve", "--host", HOST, "--port", str(port)]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*command, "--workers", str(workers)], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def wait_until_serving(
    process: subprocess.Popen[bytes],
    url: str,
    log_path: Path,
    *,
    timeout: float,
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """Until `url` answers GET /api/auth/me with 401 (migrated, routing) and `ready()` holds;
    raises with the end of the log if the server exits or never gets there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"astra serve exited early:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{url}/api/auth/me", timeout=2).status_code == 401 and ready():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"astra serve did not come up at {url}:\n{_tail(log_path)}")


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]
