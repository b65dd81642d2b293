"""Which queued job runs next: decided here, in the database, not by the broker's order.

A job waits in the database (``queued``, no message) until a worker slot on its queue is free;
then the fairest waiting job is sent to the broker. The broker therefore holds about as many
messages as there are free slots (a worker that serves two queues counts for each), and a burst
of one tenant's jobs never stands in front of another tenant's.

The fairest job on a queue, among tenants with jobs waiting there and room under their
``max_running``:
1. the tenant with the fewest jobs running or sent (``active``) on the queue;
2. then the higher priority of each tenant's next job;
3. then the tenant served longest ago (never served first): with one worker, a tenant that
   submits behind another's burst runs next, after the job that was running when it came;
4. then the oldest waiting job.
Within a tenant: priority, then first come, first served.

Free slots are the slots of the workers heard from recently (app/scheduling/presence.py),
less the jobs running and the jobs sent but not yet claimed on that queue. Dispatching runs
after every change that can free a slot or bring a job (submit, finish, release, cancel, a
worker's presence, a sweep's new trial) and on every reconciler pass; one dispatcher at a time
(an advisory lock on PostgreSQL, a lock in the process on SQLite's single API process).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.orm import Session

from taas.app.auth.models import Tenant
from taas.app.core.config import Settings
from taas.app.core.db import session_scope, utcnow
from taas.app.jobs.models import Job
from taas.app.jobs.service import record_event
from taas.app.jobs.time_limits import attempt_time_limit
from taas.app.scheduling.broker import ALL_QUEUES, enqueue_job
from taas.app.scheduling.presence import live_workers

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock's key for "choosing jobs to dispatch": a constant the service owns.
_DISPATCH_LOCK_KEY = 0x7461_6173_0002
_PROCESS_LOCK = threading.Lock()
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Sent:
    job_id: str
    queue: str
    time_limit_seconds: float


def dispatch(settings: Settings) -> list[str]:
    """Send the fairest waiting jobs to the broker, one per free worker slot; returns their ids.
    A job the broker refused waits in the database again, for the next dispatch."""
    with _PROCESS_LOCK:
        with session_scope() as session:
            _lock_dispatcher(session)
            chosen = choose_jobs(session, settings)
            session.commit()
        return [job.job_id for job in chosen if _send(job, settings)]


def _lock_dispatcher(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DISPATCH_LOCK_KEY})


def _send(job: Sent, settings: Settings) -> bool:
    if enqueue_job(job.job_id, job.queue, job.time_limit_seconds):
        return True
    with session_scope() as session:
        row = session.get(Job, job.job_id)
        if row is not None and row.status == "queued":
            row.enqueued_at = None  # the next dispatch sends it, once the broker answers
            record_event(session, row, "broker unreachable; the job waits in the queue")
    return False


def choose_jobs(session: Session, settings: Settings) -> list[Sent]:
    """Mark the fairest waiting jobs as sent, as many per queue as it has free slots."""
    chosen: list[Sent] = []
    for queue in ALL_QUEUES:
        free = free_slots(session, queue, settings)
        while free > 0:
            job = fairest_waiting_job(session, queue, settings)
            if job is None or not _mark_sent(session, job):
                break
            chosen.append(Sent(job.id, queue, attempt_time_limit(job.spec, settings)))
            free -= 1
    return chosen


def free_slots(session: Session, queue: str, settings: Settings) -> int:
    """Slots of live workers on the queue, less its jobs running and sent but not claimed."""
    capacity = sum(
        worker.slots
        for worker in live_workers(session, settings.presence_seconds)
        if queue in worker.queues
    )
    if capacity == 0:
        return 0
    taken = session.scalar(
        select(func.count()).select_from(Job).where(Job.queue == queue, _holds_a_slot())
    )
    return capacity - int(taken or 0)


def _holds_a_slot() -> ColumnElement[bool]:
    """Running, being cancelled, or queued with a message on its way to a worker."""
    sent = (Job.status == "queued") & Job.enqueued_at.is_not(None)
    return Job.status.in_(("running", "cancelling")) | sent


def _waiting(queue: str) -> ColumnElement[bool]:
    return (Job.queue == queue) & (Job.status == "queued") & Job.enqueued_at.is_(None)


def fairest_waiting_job(session: Session, queue: str, settings: Settings) -> Job | None:
    """The next job to run on the queue (see the module's docstring), or None."""
    active = _active_by_tenant(session, queue)
    candidates = []
    for job in _each_tenants_next_job(session, queue):
        tenant = session.get(Tenant, job.tenant_id)
        assert tenant is not None
        most = tenant.max_running or settings.max_running_per_tenant
        if most is not None and active[job.tenant_id] >= most:
            continue
        served = tenant.last_dispatched_at or _NEVER
        candidates.append(((active[job.tenant_id], -job.priority, served, job.created_at), job))
    if not candidates:
        return None
    return min(candidates, key=lambda item: (*item[0], item[1].id))[1]


def _active_by_tenant(session: Session, queue: str) -> Counter[int]:
    rows = session.execute(
        select(Job.tenant_id, func.count())
        .where(Job.queue == queue, _holds_a_slot())
        .group_by(Job.tenant_id)
    )
    return Counter({tenant_id: int(count) for tenant_id, count in rows})


def _each_tenants_next_job(session: Session, queue: str) -> list[Job]:
    """Each tenant's first waiting job on the queue: highest priority, then oldest."""
    order = (Job.priority.desc(), Job.created_at, Job.id)
    ranked = (
        select(
            Job.id, func.row_number().over(partition_by=Job.tenant_id, order_by=order).label("n")
        )
        .where(_waiting(queue))
        .subquery()
    )
    firsts = select(ranked.c.id).where(ranked.c.n == 1)
    return list(session.scalars(select(Job).where(Job.id.in_(firsts))))


def _mark_sent(session: Session, job: Job) -> bool:
    """The job holds a slot from now on; its tenant was served now. A compare-and-set, so that
    a job claimed or cancelled meanwhile is left alone."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "queued", Job.enqueued_at.is_(None))
        .values(enqueued_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    tenant = session.get(Tenant, job.tenant_id)
    assert tenant is not None
    tenant.last_dispatched_at = now
    session.expire(job)
    session.flush()
    return True
