"""The webhook endpoint stores post to. No sessions here: a delivery proves itself by its
signature."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Scope

from astra.errors import NotFound
from astra.http import FastJSONResponse, HotRoute, error_responses
from astra.metrics import count_delivery
from astra.webhooks import service
from astra.webhooks.batch import WebhookBatcher
from astra.webhooks.schemas import Receipt, WebhookReceipt

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


def _integration_id(raw: str | None) -> uuid.UUID:
    # A malformed id is as unknown as a missing one, and costs no database round trip.
    try:
        return uuid.UUID(raw or "")
    except ValueError:
        raise NotFound(service.NO_INTEGRATION) from None


# The id and the body are read by hand (a bad id is a 404, the body must stay raw bytes
# until verified), so they are described here rather than declared as parameters.
WEBHOOK_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "id",
            "in": "query",
            "required": True,
            "description": "The integration's id, as in its webhook_url.",
            "schema": {"type": "string", "format": "uuid"},
        }
    ],
    "requestBody": {
        "required": True,
        "description": "The order as the platform sends it, at most 5 MiB; WooCommerce's "
        "unsigned ping is the form body webhook_id=N.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/x-www-form-urlencoded": {"schema": {"type": "string"}},
        },
    },
}


@router.post(
    "/order",
    responses=error_responses(400, 401, 404, 413, 503),
    summary="Receive an order webhook from Shopify or WooCommerce",
    openapi_extra=WEBHOOK_OPENAPI,
)
async def receive_order(request: Request) -> WebhookReceipt:
    """No sign-in: the store proves itself with the signature over the raw body
    (X-Shopify-Hmac-Sha256 or X-WC-Webhook-Signature). A 200 means the delivery is
    committed; the same delivery again is a 200 that stores nothing new."""
    return WebhookReceipt(outcome=await _receive(request, request.query_params.get("id")))


async def _receive(request: Request, raw_id: str | None) -> Receipt:
    # No dependencies: the transaction is the batcher's (deliveries arriving together
    # share one), and the route needs nothing else from them.
    target = _integration_id(raw_id)
    # The raw bytes as sent (signatures cover them exactly); the app caps their size
    # (ASTRA_WEBHOOK_MAX_BODY_BYTES, see create_app).
    body = await request.body()
    batcher: WebhookBatcher = request.app.state.webhook_batcher
    headers = request.headers
    return await count_delivery(headers, batcher.receive(target, headers, body))


# The query as stores send it (the webhook_url's own `id=`, or none); any other spelling
# is the FastAPI route's to read.
_PLAIN_ID = re.compile(rb"id=([0-9A-Za-z-]{0,64})")


def _plain_id(scope: Scope) -> str | None:
    query: bytes = scope["query_string"]
    if not query:
        # No id: as unknown as a malformed one (the empty string is no UUID).
        return ""
    plain = _PLAIN_ID.fullmatch(query)
    return None if plain is None else plain.group(1).decode("ascii")


async def _answer(request: Request, raw_id: str) -> Response:
    return FastJSONResponse({"outcome": await _receive(request, raw_id)})


# The route for `astra.http.HotRoutes`: every delivery, without FastAPI's routing.
HOT_ROUTE = HotRoute("POST", f"{router.prefix}/order", accept=_plain_id, answer=_answer)
