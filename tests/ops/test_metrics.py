"""/metrics on the app's port: only with the bearer token (no session grants it, and it is
a 404 when no token is set), and what it says after some traffic: route templates, never
ids or domains; deliveries by platform and outcome; syncs and the queue from the database."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from astra.ops import samples
from testkit.stores import (
    Store,
    connect_store,
    deliver,
    encode,
    send_order,
    shopify_order,
    signed_headers,
)
from tests.conftest import Account
from tests.ops.conftest import METRICS_TOKEN

TOKEN = {"authorization": f"Bearer {METRICS_TOKEN}"}


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics", headers=TOKEN)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (name, frozenset(labels.items())): value for name, labels, value in samples(response.text)
    }


def value(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def test_without_a_token_setting_metrics_are_off(anonymous: httpx.AsyncClient) -> None:
    # The shared app has no ASTRA_METRICS_TOKEN: /metrics is no route at all.
    assert (await anonymous.get("/metrics")).status_code == 404
    assert (await anonymous.get("/metrics", headers=TOKEN)).status_code == 404


async def test_only_the_bearer_token_reads_metrics(
    metrics_client: httpx.AsyncClient, seller: Account, admin: Account
) -> None:
    refused = [
        {},
        {"authorization": "Bearer wrong-token"},
        {"authorization": f"Bearer {METRICS_TOKEN}x"},
        {"authorization": f"Basic {METRICS_TOKEN}"},
        {"authorization": METRICS_TOKEN},
    ]
    for headers in refused:
        response = await metrics_client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert "astra_" not in response.text
    # A session, an admin's included, is no way in: the cookie is not even looked at.
    for account in (seller, admin):
        cookies = dict(account.client.cookies)
        response = await metrics_client.get(
            "/metrics", headers={"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
        )
        assert response.status_code == 401
    assert (await metrics_client.get("/metrics", headers=TOKEN)).status_code == 200
    assert (
        await metrics_client.get("/metrics", headers={"authorization": f"bearer  {METRICS_TOKEN}"})
    ).status_code == 200


async def test_metrics_count_routes_by_template_and_deliveries_by_outcome(
    metrics_client: httpx.AsyncClient,
    metrics_app: object,
    seller: Account,
    owner_engine: AsyncEngine,
) -> None:
    store = await connect_store(seller, "shopify", f"metrics-{uuid.uuid4().hex[:6]}.myshopify.com")
    before = await scrape(metrics_client)
    # A seller's reads, through this app (the cookie is the same database's session).
    seller_here = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=metrics_app),  # type: ignore[arg-type]
        base_url="http://testserver",
        cookies=seller.client.cookies,
    )
    async with seller_here:
        assert (await seller_here.get(f"/api/integrations/{store.id}")).status_code == 200
        assert (await seller_here.get(f"/api/integrations/{uuid.uuid4()}")).status_code == 404
        assert (await seller_here.get(f"/no/such/{store.id}")).status_code == 404
        # The list, answered on its fast path, and one its FastAPI route answers (422).
        assert (await seller_here.get("/api/integrations")).status_code == 200
        assert (await seller_here.get("/api/integrations?limit=0")).status_code == 422
    # Deliveries: two stored, one duplicate, one badly signed.
    assert (await send_order(metrics_client, store, 9001)).json() == {"outcome": "stored"}
    body = encode(shopify_order(9002))
    headers = signed_headers(store, body)
    assert (await deliver(metrics_client, store, body, headers)).json() == {"outcome": "stored"}
    assert (await deliver(metrics_client, store, body, headers)).json() == {"outcome": "duplicate"}
    forged = signed_headers(store, body, secret="not-the-secret")
    assert (await deliver(metrics_client, store, body, forged)).status_code == 401

    after = await scrape(metrics_client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    template = "/api/integrations/{integration_id}"
    assert delta("astra_http_requests_total", route=template, method="GET", status="200") == 1
    assert delta("astra_http_requests_total", route=template, method="GET", status="404") == 1
    assert delta("astra_http_requests_total", route="unmatched", method="GET", status="404") == 1
    listing = "/api/integrations"
    assert delta("astra_http_requests_total", route=listing, method="GET", status="200") == 1
    assert delta("astra_http_requests_total", route=listing, method="GET", status="422") == 1
    webhook = "/api/webhooks/order"
    assert delta("astra_http_requests_total", route=webhook, method="POST", status="200") == 3
    assert delta("astra_http_requests_total", route=webhook, method="POST", status="401") == 1
    assert delta("astra_http_request_duration_seconds_count", route=webhook, method="POST") == 4
    assert delta("astra_webhook_deliveries_total", platform="shopify", outcome="stored") == 2
    assert delta("astra_webhook_deliveries_total", platform="shopify", outcome="duplicate") == 1
    assert delta("astra_webhook_deliveries_total", platform="shopify", outcome="unauthorized") == 1
    # No label anywhere carries an id, a domain or a path as asked.
    label_values = {v for _, labels in after for _, v in labels}
    for secret_ish in (str(store.id), store.domain, "/no/such"):
        assert not any(secret_ish in v for v in label_values), secret_ish


async def _store_with_sync(
    owner_engine: AsyncEngine, store: Store, seller: Account, state: str, missed: int
) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO public.syncs (integration_id, user_id, state, missed_by_webhook)"
                " VALUES (:id, :user_id, :state, :missed)"
            ),
            {"id": store.id, "user_id": seller.id, "state": state, "missed": missed},
        )


async def test_metrics_read_syncs_and_the_queue_from_the_database(
    metrics_client: httpx.AsyncClient,
    seller: Account,
    other_seller: Account,
    owner_engine: AsyncEngine,
) -> None:
    # Two sellers' stores: the counts are over everyone, though the scrape acts as nobody.
    mine = await connect_store(seller, "woocommerce", "metrics-one.example.com")
    theirs = await connect_store(other_seller, "woocommerce", "metrics-two.example.com")
    await _store_with_sync(owner_engine, mine, seller, "failed", 3)
    await _store_with_sync(owner_engine, theirs, other_seller, "done", 4)
    async with owner_engine.begin() as connection:
        job_id = (
            await connection.execute(
                text(
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, status, scheduled_at)"
                    " VALUES ('metrics-test', 'metrics.test', 'todo', now() - interval '90 seconds')"
                    " RETURNING id"
                )
            )
        ).scalar_one()
    try:
        scraped = await scrape(metrics_client)
    finally:
        async with owner_engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
            )
    assert value(scraped, "astra_metrics_database_up") == 1
    assert value(scraped, "astra_syncs", state="failed") == 1
    assert value(scraped, "astra_syncs", state="done") == 1
    assert value(scraped, "astra_syncs", state="running") == 0
    assert value(scraped, "astra_sync_orders_missed_by_webhook") == 7
    assert value(scraped, "astra_queue_depth") >= 1
    assert value(scraped, "astra_queue_oldest_job_age_seconds") >= 90
    assert value(scraped, "astra_db_pool_connections", state="size") >= 1


async def test_a_delivery_that_fails_counts_as_failed_and_a_refusal_by_its_kind() -> None:
    from prometheus_client import REGISTRY

    from astra.metrics import count_delivery
    from astra.webhooks.service import DeliveryFailed, MalformedBody

    def now(outcome: str) -> float:
        labels = {"platform": "woocommerce", "outcome": outcome}
        return REGISTRY.get_sample_value("astra_webhook_deliveries_total", labels) or 0.0

    async def raising(exc: Exception) -> str:
        raise exc

    headers = {"x-wc-webhook-topic": "order.created"}
    before = {o: now(o) for o in ("failed", "malformed")}
    for exc in (DeliveryFailed("down"), RuntimeError("a bug")):
        with pytest.raises(type(exc)):
            await count_delivery(headers, raising(exc))
    with pytest.raises(MalformedBody):
        await count_delivery(headers, raising(MalformedBody("not json")))
    assert now("failed") - before["failed"] == 2
    assert now("malformed") - before["malformed"] == 1


async def test_orders_missed_by_webhook_is_a_gauge_that_falls_when_a_store_goes(
    metrics_client: httpx.AsyncClient, seller: Account, owner_engine: AsyncEngine
) -> None:
    """The figure is summed at scrape time over the stores still connected, so it falls
    when one is removed. Exposed as a counter, the fall would read as a reset, and
    `increase()` over it would report the remaining stores' whole total as new misses (a
    false alert each time a seller removes a store); as a gauge it is just a lower value."""
    from prometheus_client.parser import text_string_to_metric_families

    store = await connect_store(seller, "woocommerce", f"gone-{uuid.uuid4().hex[:6]}.example.com")
    await _store_with_sync(owner_engine, store, seller, "done", 5)

    async def missed() -> tuple[str, float]:
        response = await metrics_client.get("/metrics", headers=TOKEN)
        [family] = [
            family
            for family in text_string_to_metric_families(response.text)
            if family.name == "astra_sync_orders_missed_by_webhook"
        ]
        return family.type, sum(sample.value for sample in family.samples)

    kind, before = await missed()
    assert kind == "gauge"
    assert (await seller.client.delete(f"/api/integrations/{store.id}")).status_code == 204
    kind, after = await missed()
    assert (kind, before - after) == ("gauge", 5)


def test_a_crashed_process_s_pool_is_not_summed_with_the_live_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed outright (the OOM killer, a segfault) never marks itself dead; its
    pool gauge file stays in the multiprocess directory. Summed with the live ones, the
    pool would look larger than it is (and `in_use / size` hide an exhausted pool): a
    scrape drops the samples of processes that no longer run."""
    import subprocess
    import sys

    from astra import metrics

    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os\n"
            "from astra.metrics import DB_POOL\n"
            "DB_POOL.labels('size').set(5)\n"
            "os._exit(9)\n",
        ],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        check=False,
    )
    assert crashed.returncode == 9
    assert list(tmp_path.glob("gauge_livesum_*.db"))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    scraped = metrics.exposition().decode()
    assert [
        value
        for name, labels, value in samples(scraped)
        if name == "astra_db_pool_connections" and labels == {"state": "size"}
    ] in ([], [0.0])
    assert not list(tmp_path.glob("gauge_livesum_*.db"))
