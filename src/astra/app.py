"""The application factory: routers, middleware, error handlers, the database pool."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from astra.auth.api import router as auth_router
from astra.auth.deps import SESSION_COOKIE
from astra.auth.limits import SignInLimits
from astra.auth.pages import router as auth_pages
from astra.db.session import Database
from astra.db.urls import app_url
from astra.http import BodyLimit, CrossSiteGuard, HotRoutes, TrustedHosts, install_error_handlers
from astra.integrations.api import router as integrations_router
from astra.integrations.hot import hot_routes
from astra.integrations.pages import router as integrations_pages
from astra.logs import RequestLogMiddleware
from astra.metrics import RequestMetrics
from astra.ops import OpsEndpoints, pool_sampled, schema_revisions
from astra.orders.api import router as orders_router
from astra.settings import Settings
from astra.stores.net import resolve_host
from astra.sync.api import router as sync_router
from astra.sync.queue import job_app, open_queue
from astra.sync.worker import QUEUE_CONNECTIONS, start_in_process, stop_in_process
from astra.web.assets import STATIC_PATH, static_files
from astra.web.security import SecurityHeaders
from astra.webhooks.api import HOT_ROUTE as HOT_WEBHOOK
from astra.webhooks.api import router as webhooks_router
from astra.webhooks.batch import WebhookBatcher


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(
            app_url(settings),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        app.state.db = database
        # /readyz compares the database's revision with these.
        app.state.schema = schema_revisions()
        batcher = WebhookBatcher(
            database,
            encryption_key=settings.encryption_key,
            window_ms=settings.webhook_batch_ms,
            max_size=settings.webhook_batch_max,
        )
        app.state.webhook_batcher = batcher
        app.state.sign_in_limits = SignInLimits.from_settings(settings, database)
        # Routes defer jobs through it; with ASTRA_IN_PROCESS_WORKER (`astra serve`) this
        # process also runs them, with one worker of its own.
        worker = settings.in_process_worker
        jobs = job_app(settings, database)
        queue_connections = QUEUE_CONNECTIONS + (settings.worker_concurrency if worker else 0)
        # What exists now (modules, routes, models, the pool) lives as long as the
        # process: freezing it keeps the collector's full passes to request garbage
        # (BENCHMARKS.md has the measurement).
        gc.collect()
        gc.freeze()
        try:
            async with (
                pool_sampled(database),
                open_queue(jobs, settings, max_connections=queue_connections),
            ):
                app.state.jobs = jobs
                if worker:
                    start_in_process(jobs, settings)
                try:
                    yield
                finally:
                    # Its running jobs finish, or go back to the queue, before pools close.
                    await stop_in_process()
        finally:
            # Every delivery accepted is committed or answered before the pool closes.
            await batcher.drain()
            await database.dispose()
            gc.unfreeze()

    app = FastAPI(
        title="Astra Integrations",
        version="0.1.0",
        description="Connect Shopify and WooCommerce stores to Astra and receive their orders.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load scripts from a CDN, which the page policy (and working
        # offline) rules out; /openapi.json serves any OpenAPI viewer.
        docs_url=None,
        redoc_url=None,
        # FastAPI's OpenTelemetry bridge: this service has no OpenTelemetry (its metrics are
        # Prometheus', its logs JSON lines), and the bridge checked for it on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.store_resolver = resolve_host
    install_error_handlers(app)
    # Routes are matched in order: the webhook, which every store's every order calls, first.
    app.include_router(webhooks_router)
    app.include_router(auth_router)
    app.include_router(integrations_router)
    app.include_router(orders_router)
    app.include_router(sync_router)
    app.include_router(auth_pages)
    app.include_router(integrations_pages)
    app.mount(STATIC_PATH, static_files(), name="static")
    # Innermost: the hottest routes' ordinary requests, after every guard below.
    app.add_middleware(HotRoutes, routes=(HOT_WEBHOOK, *hot_routes(settings)))
    webhooks = f"{webhooks_router.prefix}/"
    app.add_middleware(CrossSiteGuard, cookie_name=SESSION_COOKIE, exempt_prefixes=(webhooks,))
    # Every body is capped; stores' order webhooks get their own, larger cap.
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        prefix_limits={webhooks: settings.webhook_max_body_bytes},
    )
    # Webhook URLs and redirects are built from the Host header: only known names get in.
    app.add_middleware(TrustedHosts, allowed_hosts=settings.trusted_hosts, www_redirect=False)
    app.add_middleware(SecurityHeaders)
    # Outside the rest (added later, run earlier): every response, errors included,
    # carries the id, and is counted.
    app.add_middleware(RequestLogMiddleware, access_log=settings.access_log)
    app.add_middleware(RequestMetrics)
    # Probes and /metrics: answered before all of the above (no Host check, log or count).
    app.add_middleware(OpsEndpoints, metrics_token=settings.metrics_token)
    return app
