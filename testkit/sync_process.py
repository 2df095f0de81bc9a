"""One sync (`astra.sync.engine.run_sync`) in a process of its own, for tests that kill it
outright mid-way: settings from the environment as `astra sync` reads them, the simulated
cloud storage host resolved to 127.0.0.1 (the store server's), and each committed state
printed as one JSON line.

    python -m testkit.sync_process INTEGRATION_ID [--hold-after-orders N]

`--hold-after-orders N`: once N orders are in, stop there (sleep) until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import uuid
from collections.abc import Sequence

from astra.db.session import Database
from astra.db.urls import app_url
from astra.settings import Settings
from astra.stores.net import IPAddress
from astra.sync.engine import run_sync
from astra.sync.state import SyncState
from testkit.simulators.storage import HOST as STORAGE_HOST


async def storage_at_loopback(host: str, port: int) -> Sequence[str]:
    if host != STORAGE_HOST:
        raise OSError(f"{host} resolves nowhere here")
    return ["127.0.0.1"]


def loopback_only(address: IPAddress) -> bool:
    return address == ipaddress.ip_address("127.0.0.1")


async def main(integration_id: uuid.UUID, hold_after: int | None) -> int:
    settings = Settings()
    database = Database(app_url(settings), pool_size=2, max_overflow=0)

    async def progress(state: SyncState) -> None:
        print(json.dumps({"state": state.state, "imported": state.imported}), flush=True)
        if hold_after is not None and state.imported >= hold_after:
            await asyncio.sleep(3600)

    try:
        done = await run_sync(
            database,
            settings,
            integration_id,
            progress=progress,
            resolver=storage_at_loopback,
            address_allowed=loopback_only,
        )
    finally:
        await database.dispose()
    print(json.dumps({"done": done.state, "imported": done.imported, "error": done.error}))
    return 0 if done.error is None else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("integration_id", type=uuid.UUID)
    parser.add_argument("--hold-after-orders", type=int)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.integration_id, args.hold_after_orders)))
