"""The workers the API has heard from: their queues and job slots, for the dispatcher."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from taas.app.core.db import Base, UTCDateTime, utcnow


class WorkerPresence(Base):
    """One worker process (its Celery node), as it last said: what it serves and how many jobs
    it runs at once. Rows not seen for three presence periods count for nothing."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    queues: Mapped[list[str]] = mapped_column(JSON)
    slots: Mapped[int] = mapped_column(Integer)
    # {name: {"available": bool, "reason": str}} for each built-in dataset, as the worker found
    # its files; None from a worker that does not say.
    datasets: Mapped[dict[str, dict[str, object]] | None] = mapped_column(JSON, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
