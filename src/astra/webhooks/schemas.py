from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Receipt = Literal["stored", "stale", "deleted", "ignored", "held", "refused", "duplicate", "ping"]


class WebhookReceipt(BaseModel):
    outcome: Receipt = Field(
        description=(
            "stored, stale, deleted, ignored, held or refused (see the delivery log's "
            "outcome); "
            "duplicate: this delivery was already recorded; ping: WooCommerce's hello."
        )
    )
