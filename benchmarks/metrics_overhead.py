"""What `astra.metrics.RequestMetrics` adds to a request: a bare ASGI endpoint called in
process with and without it, alternating, 20,000 calls a run, median of 7 runs.

    .venv/bin/python -m benchmarks.metrics_overhead                  # in-memory values
    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) .venv/bin/python -m benchmarks.metrics_overhead
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from astra.metrics import RequestMetrics

CALLS = 20_000
RUNS = 7


class _Route:
    path = "/api/webhooks/order"


async def endpoint(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["route"] = _Route()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    return None


async def per_call(app: Any) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        scope = {"type": "http", "method": "POST", "path": "/api/webhooks/order", "headers": []}
        await app(scope, receive, send)
    return (time.perf_counter() - started) / CALLS * 1e6


async def main() -> None:
    metered = RequestMetrics(endpoint)  # type: ignore[arg-type]
    bare, with_metrics = [], []
    for _ in range(RUNS):
        bare.append(await per_call(endpoint))
        with_metrics.append(await per_call(metered))
    b, m = statistics.median(bare), statistics.median(with_metrics)
    mode = "multiprocess" if "PROMETHEUS_MULTIPROC_DIR" in os.environ else "in-memory"
    print(f"{mode}: bare {b:.2f} µs, with RequestMetrics {m:.2f} µs, +{m - b:.2f} µs a request")


if __name__ == "__main__":
    asyncio.run(main())
