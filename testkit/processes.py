"""Real servers as subprocesses on 127.0.0.1, for tests and `make soak`: a free port, start
(`astra serve`, or any command), wait until it answers, stop."""

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


def start(
    command: list[str], env: dict[str, str], log_path: Path, *, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """`command` in a subprocess, its output in `log_path`."""
    with log_path.open("wb") as log:
        # The callers' own commands (this interpreter, our modules), never outside input.
        return subprocess.Popen(  # noqa: S603
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )


def start_serve(
    env: dict[str, str],
    port: int,
    log_path: Path,
    *,
    workers: int = 1,
    metrics_port: int | None = None,
) -> subprocess.Popen[bytes]:
    """`astra serve` on HOST:port in a subprocess, its output in `log_path`."""
    command = [sys.executable, "-m", "astra.cli", "serve", "--host", HOST, "--port", str(port)]
    if metrics_port is not None:
        command += ["--metrics-port", str(metrics_port)]
    return start([*command, "--workers", str(workers)], env, log_path)


def wait_until_serving(
    process: subprocess.Popen[bytes],
    url: str,
    log_path: Path,
    *,
    timeout: float,
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """Until `url` answers GET /api/auth/me with 401 (migrated, routing; the raw stack
    answers so too) and `ready()` holds; raises with the end of the log if the server exits
    or never gets there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The server exited early:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{url}/api/auth/me", timeout=2).status_code == 401 and ready():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"The server did not come up at {url}:\n{_tail(log_path)}")


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]
