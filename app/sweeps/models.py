from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from taas.app.core.db import Base, UTCDateTime, utcnow

SWEEP_STATUSES = ("running", "succeeded", "failed", "cancelled")


class Sweep(Base):
    """A search over job specs: its trials are ordinary jobs (``Job.sweep_id``). Everything the
    controller decides from is here and in the trials, so any API process can take over."""

    __tablename__ = "sweeps"
    __table_args__ = (Index("ix_sweeps_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the base job spec, as submitted
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(16))
    objective: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # one or two {metric, goal}
    constraint: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    early_stopping: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    max_trials: Mapped[int] = mapped_column(Integer)
    max_parallel: Mapped[int] = mapped_column(Integer)
    max_failures: Mapped[int] = mapped_column(Integer)
    max_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    seed: Mapped[int] = mapped_column(Integer)
    # Trials created so far: the next trial's number, and the bound on max_trials (raised in
    # the same transaction that creates the trial, under the sweep's row lock).
    trials_started: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text, default=None)  # why it ended, in words
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
