"""`make bench`: seed, start the project and the raw-stack reference side by side, drive
both with wrk, print a table of medians and ratios.

Every figure is the median of 3 runs; project and raw stack alternate within one run of
this script, so the ratio is what to read on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from astra.db.urls import owner_url
from astra.pagination import encode_cursor
from astra.settings import Settings
from benchmarks import chart, cpu_split
from testkit import seed, webhook_payloads

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
# BENCH_PORT_OFFSET moves every port, so two checkouts can bench side by side.
PORT_OFFSET = int(os.environ.get("BENCH_PORT_OFFSET", "0"))
PROJECT_PORT, RAW_PORT = 8100 + PORT_OFFSET, 8101 + PORT_OFFSET
WORKERS = os.cpu_count() or 2
DEEP_ROWS = 90_000


@dataclass
class Figure:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Scenario:
    name: str
    path: str
    token_email: str
    script: str | None = None
    raw: bool = True
    connections: int | None = None
    results: dict[str, list[Figure]] = field(default_factory=dict)


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise ValueError(f"unexpected wrk latency {value!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(
    port: int,
    path: str,
    *,
    cookie: str | None,
    script: str | None,
    connections: int,
    seconds: int,
    env: dict[str, str],
) -> Figure:
    command = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        *(["-H", f"Cookie: astra_session={cookie}"] if cookie else []),
        f"http://127.0.0.1:{port}{path}",
    ]
    if script:
        command[1:1] = ["-s", str(ROOT / "wrk" / script)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    if "50%" not in output:
        raise RuntimeError(f"wrk printed no latencies:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = int(errors_match.group(1)) if errors_match else 0
    return Figure(rps, p50, p99, errors)


def wait_until_up(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/auth/me", timeout=1)
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}")


def ensure_free(port: int) -> None:
    """A server left on the port would be measured instead of the one started here."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"Port {port} is taken by another server; stop it and run again.")


def serve_project(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`astra serve` as production runs it: one worker per core."""
    ensure_free(port)
    command = [sys.executable, "-m", "astra.cli", "serve", "--port", str(port)]
    return subprocess.Popen(
        [*command, "--workers", str(WORKERS)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_servers(env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    for port in (PROJECT_PORT, RAW_PORT):
        ensure_free(port)
    raw = [sys.executable, "-m", "benchmarks.raw_app", "--port", str(RAW_PORT)]
    servers = [
        serve_project(PROJECT_PORT, env),
        subprocess.Popen([*raw, "--workers", str(WORKERS)], env=env, stdout=subprocess.DEVNULL),
    ]
    wait_until_up(PROJECT_PORT)
    wait_until_up(RAW_PORT)
    return servers


async def cursor_at(settings: Settings, rows: int) -> str:
    """The admin list's cursor after `rows` rows, as a client paging that far would hold."""
    engine = create_async_engine(owner_url(settings))
    async with engine.connect() as connection:
        created_at, row_id = (
            await connection.execute(
                text(
                    "SELECT created_at, id FROM public.integrations "
                    "ORDER BY created_at DESC, id DESC OFFSET :rows LIMIT 1"
                ),
                {"rows": rows - 1},
            )
        ).one()
    await engine.dispose()
    return encode_cursor(created_at, row_id)


def worker_rss_mb(parent_pid: int) -> float:
    """The largest resident set among the server's worker processes."""
    children = subprocess.run(
        ["pgrep", "-P", str(parent_pid)], capture_output=True, text=True
    ).stdout.split()
    sizes = []
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        sizes.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)  # type: ignore[union-attr]
    return max(sizes, default=0.0)


SWEEP_LEVELS = (1, 8, 32, 128)


def concurrency_sweep(env: dict[str, str], seconds: int) -> dict[str, dict[int, float]]:
    """Req/s at each concurrency for the list (project and raw) and the webhook endpoint."""
    lines = {
        "seller list, project": (PROJECT_PORT, "/api/integrations", None),
        "seller list, raw stack": (RAW_PORT, "/api/integrations", None),
        "webhook deliveries, project": (PROJECT_PORT, "/api/webhooks/order", "webhook.lua"),
        "webhook deliveries, raw stack": (RAW_PORT, "/api/webhooks/order", "webhook.lua"),
    }
    series: dict[str, dict[int, float]] = {name: {} for name in lines}
    for level in SWEEP_LEVELS:
        for name, (port, path, script) in lines.items():
            figure = wrk(
                port,
                path,
                cookie=seed.session_token(seed.SELLER_20),
                script=script,
                connections=level,
                seconds=seconds,
                env=env,
            )
            series[name][level] = figure.rps
    print("\nreq/s by concurrency:", json.dumps(series))
    return series


def time_make_run(env: dict[str, str], runs: int = 3) -> float:
    """Seconds from `make run` to the first 200, on a data dir a first run initialised."""
    run_env = env | {"ASTRA_DATA_DIR": str(ROOT.parent / ".astra-bench-run"), "ASTRA_PORT": "8102"}
    ensure_free(8102)
    run_env.pop("DATABASE_URL", None)
    timings = []
    for attempt in range(runs + 1):
        started = time.monotonic()
        server = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT.parent,
            env=run_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_200("http://127.0.0.1:8102/login", timeout=120)
            if attempt:  # the first start initialises the data dir and is not timed
                timings.append(time.monotonic() - started)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    return statistics.median(timings)


def wait_for_200(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{url} never answered 200")


def prepare() -> tuple[dict[str, str], Settings, Path]:
    """Seed the benchmark database and sign the webhook deliveries; returns the servers'
    environment, the settings, and the deliveries file (wrk's webhook.lua reads it)."""
    env = dict(os.environ)
    env.setdefault("ASTRA_DATA_DIR", str(ROOT.parent / ".astra-bench"))
    env["ASTRA_ACCESS_LOG"] = "false"
    os.environ.update(env)
    settings = Settings()
    print("Seeding ...", flush=True)
    print(
        "  seed timings (s):", {k: round(v, 1) for k, v in seed.seed(settings).items()}, flush=True
    )
    deliveries = RESULTS / "webhooks.tsv"
    RESULTS.mkdir(exist_ok=True)
    print("  signed deliveries prepared:", webhook_payloads.write(settings, deliveries), flush=True)
    env["WEBHOOK_DELIVERIES"] = str(deliveries)
    return env, settings, deliveries


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="run only the scenarios whose name contains TEXT (e.g. Shopify), then print "
        "their table: no sweep, no `make run` timing, no CPU split",
    )
    args = parser.parse_args()

    env, settings, deliveries = prepare()
    deep = f"/api/integrations?cursor={asyncio.run(cursor_at(settings, DEEP_ROWS))}"
    scenarios = [
        # What the framework costs on its own: no cookie, so no database on either side.
        Scenario("floor: anonymous GET /api/integrations -> 401", "/api/integrations", ""),
        Scenario("seller GET /api/integrations (20 stores)", "/api/integrations", seed.SELLER_20),
        Scenario("admin GET /api/integrations, first page", "/api/integrations", seed.ADMIN),
        Scenario(f"admin GET /api/integrations, {DEEP_ROWS:,} rows deep", deep, seed.ADMIN),
        Scenario(
            "POST /api/integrations",
            "/api/integrations",
            seed.POSTING_SELLER,
            script="post_integration.lua",
        ),
        Scenario(
            "signed Shopify deliveries, unique ids",
            "/api/webhooks/order",
            seed.SELLER_20,
            script="webhook.lua",
        ),
        Scenario(
            "/settings/integrations, 50 cards (1 connection: server time)",
            "/settings/integrations",
            seed.ADMIN,
            raw=False,
            connections=1,
        ),
    ]
    if args.only:
        scenarios = [s for s in scenarios if args.only.lower() in s.name.lower()]
        if not scenarios:
            raise SystemExit(f"No scenario's name contains {args.only!r}.")
    servers = start_servers(env)
    try:
        for scenario in scenarios:
            for _ in range(args.runs):
                for target, port in (("project", PROJECT_PORT), ("raw", RAW_PORT)):
                    if target == "raw" and not scenario.raw:
                        continue
                    figure = wrk(
                        port,
                        scenario.path,
                        cookie=seed.session_token(scenario.token_email)
                        if scenario.token_email
                        else None,
                        script=scenario.script,
                        connections=scenario.connections or args.connections,
                        seconds=args.seconds,
                        env=env,
                    )
                    scenario.results.setdefault(target, []).append(figure)
        rss_mb = worker_rss_mb(servers[0].pid)
        sweep = {} if args.only else concurrency_sweep(env, args.seconds)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    if args.only:
        report(scenarios, args.connections)
        return 0
    print(f"\nLargest project worker RSS after the runs: {rss_mb:.0f} MB")
    startup = time_make_run(env)
    print(f"`make run` on an initialised data dir, to the first 200: median {startup:.2f} s")
    chart.draw(ROOT / "throughput.png", "Throughput against concurrency", sweep)
    print("Chart: benchmarks/throughput.png")
    report(scenarios, args.connections)
    # What bounds the ratios: each app's own CPU per request, measured in-process.
    signed = cpu_split.read_deliveries(deliveries)
    asyncio.run(cpu_split.measure(settings, signed, requests=600, rounds=3))
    return 0


def report(scenarios: list[Scenario], connections: int) -> None:
    RESULTS.mkdir(exist_ok=True)
    print(f"\nwrk, {connections} connections, median of runs; {WORKERS} workers each\n")
    print(
        "| scenario | project req/s | p50 ms | p99 ms | raw req/s | raw p99 ms | ratio | non-2xx |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for scenario in scenarios:
        project = scenario.results["project"]
        row = {
            "rps": statistics.median(f.rps for f in project),
            "p50_ms": statistics.median(f.p50_ms for f in project),
            "p99_ms": statistics.median(f.p99_ms for f in project),
            "errors": sum(f.errors for f in project),
        }
        raw = scenario.results.get("raw", [])
        raw_rps = statistics.median(f.rps for f in raw) if raw else None
        raw_p99 = statistics.median(f.p99_ms for f in raw) if raw else None
        row["raw_rps"], row["raw_p99_ms"] = raw_rps, raw_p99
        ratio = f"{row['rps'] / raw_rps:.2f}" if raw_rps else "-"
        print(
            f"| {scenario.name} | {row['rps']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{raw_rps or 0:.0f} | {raw_p99 or 0:.1f} | {ratio} | {row['errors']} |"
        )
        summary[scenario.name] = row
    (RESULTS / "latest.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
