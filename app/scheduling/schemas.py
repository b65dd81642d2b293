"""What the worker presence routes take and return."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

QueueName = Literal["cpu", "gpu"]


class PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queues: list[QueueName] = Field(min_length=1, max_length=2)
    slots: int = Field(ge=1, le=1024, description="jobs it runs at once")


class PresenceOut(BaseModel):
    presence_seconds: float = Field(description="say it again within this period")
