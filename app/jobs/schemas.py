"""What the public job routes return (the v1 contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from taas.app.spec import JobSpec

JobStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]


class Progress(BaseModel):
    epoch: int = Field(description="epochs completed")
    epochs: int = Field(description="epochs asked for")
    fraction: float = Field(
        ge=0.0, le=1.0, description="of the whole run, batches within the current epoch counted"
    )
    batches_done: int | None = Field(
        default=None, description="batches done in the current epoch; null unless running"
    )
    batches_per_epoch: int | None = Field(default=None, description="null until known")
    samples_per_second: float | None = Field(
        default=None, description="training throughput over the last few seconds"
    )
    eta_seconds: float | None = Field(
        default=None, description="estimated seconds until training ends; null unless running"
    )
    updated_at: datetime | None = Field(
        default=None, description="when the worker last reported progress"
    )


class MetricPointOut(BaseModel):
    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    lr: float | None
    epoch_seconds: float | None
    samples_per_second: float | None


class StepPointOut(BaseModel):
    """A point of the step-granularity series."""

    step: int = Field(description="global optimizer step, 1-based")
    epoch: float = Field(description="fractional epoch: 1.5 is half way through the second")
    kind: Literal["train", "eval"] = Field(
        description="train: mean training loss since the previous train point; eval: one "
        "evaluation on the validation split"
    )
    train_loss: float | None
    lr: float | None
    val_loss: float | None
    val_accuracy: float | None


class StepList(BaseModel):
    items: list[StepPointOut]


class JobMetrics(BaseModel):
    latest: MetricPointOut | None = Field(description="the last epoch's metric point")
    test_accuracy: float | None = Field(description="final accuracy on the test split")
    test_loss: float | None = Field(description="final mean cross-entropy on the test split")


class JobError(BaseModel):
    type: str = Field(description="user_error, infra, timeout, cancelled or internal")
    message: str


class JobOut(BaseModel):
    id: str
    name: str
    status: JobStatus
    spec: JobSpec = Field(description="the normalized spec, every default filled in")
    attempt: int = Field(description="number of the current (or last) attempt; 0 before any")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    metrics: JobMetrics
    error: JobError | None
    artifacts: list[str]
    parameter_count: int
    device: str | None = Field(description="the device the last attempt trained on")
    acceleration: dict[str, Any] | None = Field(description="what the trainer applied, and why")
    stop_reason: str | None = Field(description="completed, cancelled, target_reached, ...")
    waiting_for: str | None = Field(
        default=None, description="while queued: what it waits for, in words"
    )
    sweep_id: str | None = Field(default=None, description="the sweep this job is a trial of")
    trial_number: int | None = Field(default=None, description="its number in that sweep")
    params: dict[str, Any] | None = Field(
        default=None, description="a trial's parameters (dotted spec paths and values)"
    )


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


class MetricList(BaseModel):
    items: list[MetricPointOut]


class EventOut(BaseModel):
    created_at: datetime
    kind: Literal["status", "message"]
    status: JobStatus | None
    attempt: int | None
    message: str


class EventList(BaseModel):
    items: list[EventOut]


class ArtifactOut(BaseModel):
    name: str
    kind: str
    size_bytes: int
    sha256: str
    created_at: datetime


class ArtifactList(BaseModel):
    items: list[ArtifactOut]


class CheckpointOut(BaseModel):
    """A kept checkpoint: where a new attempt resumes, and a point to look back at."""

    epoch: int = Field(description="epochs completed when it was saved")
    step: int | None = Field(
        description="optimizer steps completed then (null until the job reported its batches "
        "per epoch)"
    )
    metrics: MetricPointOut | None = Field(description="that epoch's metrics, when reported")
    name: str = Field(description="its artifact: GET /v1/jobs/{id}/artifacts/{name} downloads it")
    size_bytes: int
    sha256: str
    created_at: datetime


class CheckpointList(BaseModel):
    items: list[CheckpointOut] = Field(description="oldest epoch first")
