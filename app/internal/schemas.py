"""Messages between workers and the API (internal routes, worker token)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class WorkerMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ClaimRequest(WorkerMessage):
    worker: str = Field(min_length=1, max_length=200)


class DatasetRef(BaseModel):
    """An uploaded dataset a job trains on: fetched from the API, cached by sha256."""

    id: str
    name: str = Field(default="", description="its name, as its owner gave it (for model.json)")
    sha256: str
    size_bytes: int


class ClaimResponse(BaseModel):
    job_id: str
    attempt: int
    spec: dict[str, Any]
    heartbeat_seconds: float
    time_limit_seconds: float = Field(description="stop and fail as timeout this long after now")
    time_limit: str = Field(description="the time limit and where it comes from, in words")
    dataset: DatasetRef | None = Field(default=None, description="null for built-in datasets")


class StepPointIn(WorkerMessage):
    kind: Literal["train", "eval"]
    step: int = Field(ge=1)
    epoch: float = Field(ge=0.0)
    train_loss: float | None = None
    lr: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


class HeartbeatRequest(WorkerMessage):
    epoch: int = Field(default=0, ge=0, description="epochs completed")
    fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    # Within the current epoch: absent from a worker that reports per epoch only.
    batches_done: int | None = Field(default=None, ge=0)
    batches_per_epoch: int | None = Field(default=None, ge=1)
    samples_per_second: float | None = Field(default=None, ge=0.0)
    eta_seconds: float | None = Field(default=None, ge=0.0)
    points: list[StepPointIn] = Field(default_factory=list, max_length=1000)
    # Once training has started: where it runs and the acceleration plan (the finish replaces
    # them with the final report).
    device: str | None = Field(default=None, max_length=40)
    acceleration: dict[str, Any] | None = None


class HeartbeatResponse(BaseModel):
    cancel: bool = Field(description="true once the user asked to cancel: stop and finish")
    prune: bool = Field(
        default=False,
        description="true once the trial's sweep stopped it early: stop, save the model and "
        "finish succeeded with stop_reason pruned",
    )


class MetricPointIn(WorkerMessage):
    epoch: int = Field(ge=1)
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    lr: float | None = None
    epoch_seconds: float | None = None
    samples_per_second: float | None = None


class EventIn(WorkerMessage):
    message: str = Field(min_length=1, max_length=4000)


class FinishRequest(WorkerMessage):
    status: Literal["succeeded", "failed", "cancelled"]
    test_accuracy: float | None = None
    test_loss: float | None = None
    stop_reason: str | None = Field(default=None, max_length=32)
    device: str | None = Field(default=None, max_length=32)
    acceleration: dict[str, Any] | None = None
    error_type: Literal["user_error", "infra", "timeout", "internal"] | None = None
    error_message: str | None = Field(default=None, max_length=4000)


class ReleaseRequest(WorkerMessage):
    reason: str = Field(default="the worker is shutting down", min_length=1, max_length=500)


class Ack(BaseModel):
    ok: bool = True
