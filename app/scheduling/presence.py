"""Workers say they are alive, what they serve and how many jobs they run at once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.db import utcnow
from app.scheduling.models import WorkerPresence
from app.scheduling.schemas import PresenceIn

# Rows of workers gone this long are deleted (they stopped counting long before).
FORGET_AFTER = timedelta(hours=1)


def note_presence(session: Session, name: str, presence: PresenceIn) -> None:
    """Record that the worker is alive, with its queues and slots as it says them now."""
    row = session.get(WorkerPresence, name)
    if row is None:
        session.add(WorkerPresence(name=name, queues=presence.queues, slots=presence.slots))
    else:
        row.queues, row.slots, row.seen_at = list(presence.queues), presence.slots, utcnow()
    session.flush()


def forget_worker(session: Session, name: str) -> None:
    """The worker is stopping: its slots count for nothing from now on."""
    session.execute(delete(WorkerPresence).where(WorkerPresence.name == name))
    session.flush()


def forget_gone_workers(session: Session) -> int:
    result = session.execute(
        delete(WorkerPresence).where(WorkerPresence.seen_at < utcnow() - FORGET_AFTER)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
