"""What the worker presence routes take and return."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

QueueName = Literal["cpu", "gpu"]
BuiltinName = Literal["fashion_mnist", "mnist", "cifar10", "synthetic"]


class DatasetOnWorker(BaseModel):
    available: bool
    reason: str = Field(max_length=1000, description="where its files are, or what is missing")


class PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queues: list[QueueName] = Field(min_length=1, max_length=2)
    slots: int = Field(ge=1, le=1024, description="jobs it runs at once")
    # Whether each built-in dataset's files are on this worker (a worker of an older version
    # says nothing: the API then asks its own disk).
    datasets: dict[BuiltinName, DatasetOnWorker] | None = None


class PresenceOut(BaseModel):
    presence_seconds: float = Field(description="say it again within this period")
