from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from taas.app.core.db import Base, UTCDateTime, utcnow


class StreamEvent(Base):
    """One event of the live stream (status, progress, metric, log, end), in the order clients
    must see it. Ids are handed out in commit order (see app/stream/service.py), so a reader that
    has seen id n has seen every event before it, and ``Last-Event-ID`` resumes exactly."""

    __tablename__ = "stream_events"
    __table_args__ = (
        Index("ix_stream_events_tenant_id_id", "tenant_id", "id"),
        Index("ix_stream_events_job_id_id", "job_id", "id"),
        # SQLite would reuse the ids of deleted rows at the top; a resuming client would skip them.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign keys: inserting a row under one would lock the job row (KEY SHARE), and the
    # writer, holding the stream's write lock, could then wait for a worker that holds the job
    # row and waits for that lock. Deleting a job deletes its events (jobs/service.py).
    tenant_id: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
