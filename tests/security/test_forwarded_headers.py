"""Forwarded headers against a live `astra serve`, as the attack review forged them: from
127.0.0.1, a new X-Forwarded-For on every failed sign-in, to dodge the per-address limit,
and X-Forwarded-Proto to change the scheme the app builds URLs with. Believed only from a
peer in ASTRA_TRUSTED_PROXIES (none by default)."""

from __future__ import annotations

import httpx

from testkit.harness import AppServer
from tests.conftest import TestDatabase
from tests.security.conftest import serving_test_database

PER_ADDRESS = 3
LIMITS = {
    "ASTRA_LOGIN_MAX_FAILURES_PER_ADDRESS": str(PER_ADDRESS),
    "ASTRA_LOGIN_MAX_FAILURES_PER_ACCOUNT": "100",
}


async def forged_attempts(server: AppServer) -> tuple[list[int], str]:
    """Failed sign-ins for different emails, each claiming a different client address;
    then a trailing-slash redirect claiming https. The statuses and the redirect target."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        statuses = [
            (
                await client.post(
                    "/api/auth/login",
                    json={"email": f"nobody{n}@example.com", "password": "not the password"},
                    headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
                )
            ).status_code
            for n in range(PER_ADDRESS + 2)
        ]
        redirect = await client.get("/api/integrations/", headers={"X-Forwarded-Proto": "https"})
    assert redirect.status_code == 307
    return statuses, redirect.headers["location"]


async def test_forwarded_headers_from_an_untrusted_peer_change_nothing(
    test_database: TestDatabase,
) -> None:
    with serving_test_database(test_database, **LIMITS) as server:
        statuses, location = await forged_attempts(server)

    # Every attempt counted against 127.0.0.1, whatever it claimed.
    assert statuses == [401] * PER_ADDRESS + [429, 429]
    assert location == f"{server.base_url}/api/integrations"


async def test_a_trusted_proxy_is_believed(test_database: TestDatabase) -> None:
    with serving_test_database(
        test_database, ASTRA_TRUSTED_PROXIES="127.0.0.1", **LIMITS
    ) as server:
        statuses, location = await forged_attempts(server)

    # Each attempt came from the address its proxy named: none reached a limit.
    assert statuses == [401] * (PER_ADDRESS + 2)
    assert location == f"https://127.0.0.1:{server.port}/api/integrations"
