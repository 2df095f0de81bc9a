"""Before and after, side by side in one run: an earlier commit's server against this
checkout's, on the same seeded database, alternating wrk runs.

    .venv/bin/python -m benchmarks.compare --before d71f32e

The earlier commit is checked out into a temporary git worktree and served from there
(PYTHONPATH puts its `src` ahead of the installed one); both use this checkout's virtual
environment, so only the project's own code differs. Both serve one database, migrated by
this checkout: the migrations the earlier commit lacks are copied into its worktree, so its
own start-up migration finds the database at a revision it knows (its code must work on
the newer schema). Prints req/s and p99 for each side and the ratio after / before.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks import run
from testkit import seed

BEFORE_PORT, AFTER_PORT = 8103 + run.PORT_OFFSET, run.PROJECT_PORT
SCENARIOS = {
    "floor: anonymous GET /api/integrations -> 401": ("/api/integrations", None, None),
    "seller GET /api/integrations (20 stores)": ("/api/integrations", seed.SELLER_20, None),
    "POST /api/integrations": ("/api/integrations", seed.POSTING_SELLER, "post_integration.lua"),
    "signed Shopify deliveries": ("/api/webhooks/order", seed.SELLER_20, "webhook.lua"),
}


def serve(port: int, src: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The project as `make bench` serves it, its code taken from `src`."""
    return run.serve_project(port, env | {"PYTHONPATH": str(src)})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="the earlier commit (any git rev)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument(
        "--only", metavar="TEXT", help="only the scenarios whose name contains TEXT"
    )
    parser.add_argument(
        "--before-env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a setting for the earlier server only (repeatable); with --before HEAD it "
        "compares one setting against the default, e.g. ASTRA_WEBHOOK_BATCH_MS=0",
    )
    args = parser.parse_args()
    scenarios = {
        name: scenario
        for name, scenario in SCENARIOS.items()
        if not args.only or args.only.lower() in name.lower()
    }
    if not scenarios:
        raise SystemExit(f"No scenario's name contains {args.only!r}.")

    before_env = dict(item.split("=", 1) for item in args.before_env)
    env, _, _ = run.prepare()

    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(worktree), args.before],
            check=True,
            capture_output=True,
        )
        try:
            _add_newer_migrations(worktree)
            servers = [
                serve(BEFORE_PORT, worktree / "src", env | before_env),
                serve(AFTER_PORT, run.ROOT.parent / "src", env),
            ]
            try:
                run.wait_until_up(BEFORE_PORT)
                run.wait_until_up(AFTER_PORT)
                compare(env, args.before, args.runs, args.seconds, scenarios)
            finally:
                for server in servers:
                    server.terminate()
                    server.wait(timeout=30)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(worktree)],
                check=True,
                capture_output=True,
            )
    return 0


def _add_newer_migrations(worktree: Path) -> None:
    versions = Path("src/astra/db/migrations/versions")
    for migration in (run.ROOT.parent / versions).glob("*.py"):
        target = worktree / versions / migration.name
        if not target.exists():
            shutil.copyfile(migration, target)


def compare(
    env: dict[str, str],
    before: str,
    runs: int,
    seconds: int,
    scenarios: dict[str, tuple[str, str | None, str | None]],
) -> None:
    print(f"\nwrk, 32 connections, {seconds} s per run, median of {runs}; before = {before}\n")
    print(
        "| scenario | before req/s | after req/s | after / before | before p99 ms | after p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    for name, (path, email, script) in scenarios.items():
        figures: dict[int, list[run.Figure]] = {BEFORE_PORT: [], AFTER_PORT: []}
        for _ in range(runs):
            for port in (BEFORE_PORT, AFTER_PORT):
                figures[port].append(
                    run.wrk(
                        port,
                        path,
                        cookie=seed.session_token(email) if email else None,
                        script=script,
                        connections=32,
                        seconds=seconds,
                        env=env,
                    )
                )
        rps = {port: statistics.median(f.rps for f in runs_) for port, runs_ in figures.items()}
        p99 = {port: statistics.median(f.p99_ms for f in runs_) for port, runs_ in figures.items()}
        print(
            f"| {name} | {rps[BEFORE_PORT]:.0f} | {rps[AFTER_PORT]:.0f} | "
            f"{rps[AFTER_PORT] / rps[BEFORE_PORT]:.2f} | {p99[BEFORE_PORT]:.1f} | "
            f"{p99[AFTER_PORT]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())
