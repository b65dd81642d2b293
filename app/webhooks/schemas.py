"""What the webhook routes take and return."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal[
    "job.succeeded", "job.failed", "job.cancelled", "job.running", "sweep.completed"
]
DeliveryStatus = Literal["pending", "delivered", "failed", "gave_up"]
MAX_URL_LENGTH = 2048


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=len("http://x"),
        max_length=MAX_URL_LENGTH,
        # Documented for clients; the check itself (app/webhooks/addresses.py) says in words
        # what is wrong with a URL, where a pattern could only say that it did not match.
        json_schema_extra={
            "format": "uri",
            "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+([/?#]\S*)?$",
        },
        description="an http(s) URL on a public address (its host must resolve to one)",
    )
    events: list[EventType] = Field(min_length=1, max_length=5)


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: datetime
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_...: verify signatures with it; shown only now")


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: str = Field(description="the webhook-id header of every attempt")
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_response: str | None = Field(description="the first bytes of the last answer")
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
