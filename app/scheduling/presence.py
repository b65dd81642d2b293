"""Workers say they are alive, what they serve and how many jobs they run at once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from taas.app.core.db import utcnow
from taas.app.scheduling.models import WorkerPresence
from taas.app.scheduling.schemas import PresenceIn

# Rows of workers gone this long are deleted (they stopped counting long before).
FORGET_AFTER = timedelta(hours=1)
# A worker not heard from within this many presence periods has no free slots.
PRESENCE_PERIODS = 3


def note_presence(session: Session, name: str, presence: PresenceIn) -> None:
    """Record that the worker is alive, with its queues and slots as it says them now."""
    datasets: dict[str, dict[str, object]] | None = None
    if presence.datasets is not None:
        datasets = {str(name): report.model_dump() for name, report in presence.datasets.items()}
    row = session.get(WorkerPresence, name)
    if row is None:
        row = WorkerPresence(name=name, queues=presence.queues, slots=presence.slots)
        session.add(row)
    else:
        row.queues, row.slots, row.seen_at = list(presence.queues), presence.slots, utcnow()
    row.datasets = datasets
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


def live_workers(session: Session, presence_seconds: float) -> list[WorkerPresence]:
    """The workers heard from within three presence periods."""
    heard_since = utcnow() - timedelta(seconds=presence_seconds * PRESENCE_PERIODS)
    query = select(WorkerPresence).where(WorkerPresence.seen_at >= heard_since)
    return list(session.scalars(query))


def waiting_for(session: Session, queue: str, sent: bool, presence_seconds: float) -> str:
    """What a queued job waits for, in words: a job nobody can run must not wait in silence."""
    if sent:
        return f"a worker on the {queue} queue to take it (it was sent to a free slot)"
    slots = sum(w.slots for w in live_workers(session, presence_seconds) if queue in w.queues)
    if slots == 0:
        return f"a worker on the {queue} queue: none is running now; it starts when one is"
    return (
        f"a free slot on the {queue} queue ({slots} in all, busy with jobs that came first or "
        "are fairer to run: fewer running for their tenant, or a higher priority)"
    )
