"""The live stream's events: published by the services as they change a job, read by the stream
routes. Flushes, never commits.

A publisher adds events to its session; they are written just before the commit, under a lock
that PostgreSQL holds until the commit ends (SQLite has one writer at a time anyway). So the ids
are handed out in commit order: no event can become visible after one with a larger id, and a
reader that has seen id n has seen everything before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.orm import Session, SessionTransaction

from taas.app.jobs.models import Job
from taas.app.stream.models import StreamEvent

EVENT_KINDS = ("status", "progress", "metric", "log", "end")
# Events waiting in a session for its commit.
_PENDING = "taas.stream.pending"
# pg_advisory_xact_lock's key for "writing stream events": any constant the service owns.
_WRITE_LOCK_KEY = 0x7461_6173_0001


@dataclass(frozen=True)
class Published:
    """A stream event as readers get it."""

    id: int
    tenant_id: int
    job_id: str
    kind: str
    data: dict[str, Any]


def publish(session: Session, job: Job, kind: str, data: dict[str, Any]) -> None:
    """Add an event for the job; it is written with the session's next commit (or dropped with
    its rollback)."""
    assert kind in EVENT_KINDS, kind
    row = StreamEvent(
        tenant_id=job.tenant_id, job_id=job.id, kind=kind, data={"job_id": job.id, **data}
    )
    session.info.setdefault(_PENDING, []).append(row)


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Taken last, after every row lock this transaction needs: its holder only inserts
        # these rows and commits, so it never waits for anyone (no deadlock).
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY})
    session.add_all(pending)
    session.flush()


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended: committed or rolled back
        session.info.pop(_PENDING, None)


def read_after(
    session: Session,
    after: int,
    *,
    tenant_id: int | None = None,
    job_id: str | None = None,
    limit: int = 500,
) -> list[Published]:
    """Events with an id above ``after``, oldest first, for a tenant or one job (or all)."""
    query = select(StreamEvent).where(StreamEvent.id > after)
    if tenant_id is not None:
        query = query.where(StreamEvent.tenant_id == tenant_id)
    if job_id is not None:
        query = query.where(StreamEvent.job_id == job_id)
    rows = session.scalars(query.order_by(StreamEvent.id).limit(limit))
    return [Published(row.id, row.tenant_id, row.job_id, row.kind, row.data) for row in rows]


def newest_id(session: Session) -> int:
    return int(session.scalar(select(func.max(StreamEvent.id))) or 0)


def drop_superseded_progress(session: Session, job_id: str) -> None:
    """The job has ended: its progress events but the last are history nobody needs (a progress
    event is a snapshot, and the next one replaces it). A long job reports one a second, so
    without this a replay of its stream would be mostly stale progress."""
    newest = (
        select(func.max(StreamEvent.id))
        .where(StreamEvent.job_id == job_id, StreamEvent.kind == "progress")
        .scalar_subquery()
    )
    session.execute(
        delete(StreamEvent).where(
            StreamEvent.job_id == job_id, StreamEvent.kind == "progress", StreamEvent.id < newest
        )
    )


def delete_job_events(session: Session, job_id: str) -> None:
    """The job is being deleted: its stream goes with it (no foreign key does this, see models)."""
    session.execute(delete(StreamEvent).where(StreamEvent.job_id == job_id))
