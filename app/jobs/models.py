from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from taas.app.core.db import Base, UTCDateTime, utcnow

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
JOB_STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_jobs_queue_status", "queue", "status"),
        # A trial number is used once per sweep, whatever races the controllers run into.
        UniqueConstraint("sweep_id", "trial_number", name="uq_jobs_sweep_trial"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The spec's dataset (a built-in name or an uploaded dataset's id), so that deleting a
    # dataset can find the jobs that still need it.
    dataset: Mapped[str] = mapped_column(String(100), index=True)
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)  # the spec's, for the dispatcher
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    parameter_count: Mapped[int] = mapped_column(Integer)
    epochs: Mapped[int] = mapped_column(Integer)
    progress_epoch: Mapped[int] = mapped_column(Integer, default=0)
    progress_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    # Within the current epoch, as the worker last reported it (about once a second).
    progress_batches: Mapped[int | None] = mapped_column(Integer, default=None)
    progress_batches_per_epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    samples_per_second: Mapped[float | None] = mapped_column(Float, default=None)
    eta_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    test_accuracy: Mapped[float | None] = mapped_column(Float, default=None)
    test_loss: Mapped[float | None] = mapped_column(Float, default=None)
    stop_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    device: Mapped[str | None] = mapped_column(String(32), default=None)
    acceleration: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error_type: Mapped[str | None] = mapped_column(String(32), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the job id was last sent to the broker, and how often: the reconciler re-sends
    # unclaimed jobs with a growing delay.
    # When its message was last sent to the broker; None while it waits in the database for a
    # free worker slot (app/scheduling/dispatch.py).
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    enqueue_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # A sweep's trial: its sweep, its number there (0-based) and the params it tries.
    sweep_id: Mapped[str | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), default=None, index=True
    )
    trial_number: Mapped[int | None] = mapped_column(Integer, default=None)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Set when the trial's sweep stopped it early ("pruned"): its worker hears it with the next
    # heartbeat, finishes the model and ends succeeded.
    stop_requested: Mapped[str | None] = mapped_column(String(16), default=None)

    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="Attempt.number"
    )
    metric_points: Mapped[list[MetricPoint]] = relationship(
        cascade="all, delete-orphan", order_by="MetricPoint.epoch"
    )
    events: Mapped[list[Event]] = relationship(cascade="all, delete-orphan", order_by="Event.id")

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Attempt(Base):
    """One run of a job on a worker; writes carry the attempt number and stale ones are refused."""

    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="running")
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Past this the attempt has run out of time (app/jobs/time_limits.py); null on attempts claimed
    # before time limits were recorded.
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    job: Mapped[Job] = relationship(back_populates="attempts")


class MetricPoint(Base):
    __tablename__ = "metric_points"
    __table_args__ = (UniqueConstraint("job_id", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    epoch_seconds: Mapped[float | None] = mapped_column(Float)
    samples_per_second: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MetricStep(Base):
    """A point of the step-granularity series: the mean training loss over the steps since the
    previous point (``kind`` train), or one evaluation (``kind`` eval)."""

    __tablename__ = "metric_steps"
    # A resumed attempt repeats steps after its checkpoint: the first report of a step stays.
    __table_args__ = (UniqueConstraint("job_id", "kind", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    step: Mapped[int] = mapped_column(Integer)  # global optimizer step, 1-based
    epoch: Mapped[float] = mapped_column(Float)  # fractional: 1.5 is half way through epoch 2
    train_loss: Mapped[float | None] = mapped_column(Float, default=None)
    lr: Mapped[float | None] = mapped_column(Float, default=None)
    val_loss: Mapped[float | None] = mapped_column(Float, default=None)
    val_accuracy: Mapped[float | None] = mapped_column(Float, default=None)


class Event(Base):
    """Status changes and messages, in order: the job's history as a user reads it."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(16), default=None)
    attempt: Mapped[int | None] = mapped_column(Integer, default=None)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """A client's Idempotency-Key on POST /v1/jobs: a retry with the same key and body gets the
    job the first request made; another body under the same key is refused."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical request
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
