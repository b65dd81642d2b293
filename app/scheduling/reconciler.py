"""The reconciler: the database is the source of truth, the broker only a hint that may be lost.

A thread in each API process, every ``reconcile_seconds``:
- running attempts past their time limit by more than a lease (their worker neither stopped them
  at the limit nor reported) end as ``timed_out``, and their job fails as ``timeout``: running it
  again would only run out of time again;
- running attempts whose lease expired (no heartbeat for ``lease_seconds``: the worker died, was
  killed, lost its network, or could not report to a full disk) end as ``lost``, and their job
  goes back to ``queued`` to resume from its last checkpoint, or becomes ``failed`` after
  ``max_attempts``;
- checkpoints, or all artifacts, of jobs that ended longer ago than their retention setting are
  deleted (none by default);
- jobs sent to the broker that no worker claimed are sent again, with a growing delay and only
  while their queue holds fewer messages than such jobs, so a broker that lost some messages
  delays jobs but never loses them, and a queue does not fill with copies;
- each running sweep starts the trials it has room for, or ends (app/sweeps/controller.py);
- a Redis broker that came back from a restart without its data (a mark the reconcilers keep in
  it is gone) has its jobs dispatched again at once;
- waiting jobs are dispatched to free worker slots (app/scheduling/dispatch.py), in case an
  event that freed a slot was missed, and workers gone for an hour are forgotten.

Every change is a compare-and-set on the job's status and attempt, so several API processes can
reconcile at once: one wins, the others change nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from taas.app.artifacts.service import expire_artifacts
from taas.app.artifacts.storage import ArtifactStorage
from taas.app.core.config import Settings
from taas.app.core.db import DATABASE_UNAVAILABLE, describe_database_error, session_scope, utcnow
from taas.app.core.storage_space import STORAGE_FULL_LOG, storage_full_reason
from taas.app.jobs.models import Attempt, Job
from taas.app.jobs.service import cancelled, record_event, transition
from taas.app.jobs.time_limits import attempt_time_limit, describe_time_limit
from taas.app.observability import metrics
from taas.app.scheduling.broker import broker_came_back_empty, enqueue_job, queue_depth
from taas.app.scheduling.dispatch import dispatch
from taas.app.scheduling.presence import forget_gone_workers
from taas.app.storage.factory import store_for
from taas.app.storage.maintenance import collect_garbage
from taas.app.sweeps.controller import advance_sweep
from taas.app.sweeps.models import Sweep

logger = logging.getLogger(__name__)
STORAGE_GC_SECONDS = 24 * 3600.0  # orphaned objects are looked for once a day

# A re-enqueue waits requeue_after_seconds * 2**n after the n-th, at most this many times longer.
MAX_REQUEUE_BACKOFF = 32


@dataclass
class Reconciled:
    """What one pass changed, by job id."""

    timed_out: list[str] = field(default_factory=list)  # past its time limit: failed
    requeued: list[str] = field(default_factory=list)  # lease expired, back in the queue
    failed: list[str] = field(default_factory=list)  # lease expired on the last attempt
    cancelled: list[str] = field(default_factory=list)  # lease expired while cancelling
    re_enqueued: list[str] = field(default_factory=list)  # queued, sent to the broker again
    expired: list[str] = field(default_factory=list)  # storage keys past their retention
    sweep_trials: list[str] = field(default_factory=list)  # trials the sweeps started
    dispatched: list[str] = field(default_factory=list)  # waiting, sent to a free worker slot


def reconcile(settings: Settings, *, expire_leases: bool = True) -> Reconciled:
    """One pass: end overdue and lost attempts (unless told not to), re-send lost messages,
    then dispatch waiting jobs to free worker slots."""
    done = Reconciled()
    if expire_leases:
        with session_scope() as session:
            # Time limits first: an attempt that is both overdue and silent ran out of time.
            for job, attempt in _overdue_attempts(session, settings.lease_seconds):
                _time_out(session, job, attempt, settings, done)
                session.commit()
            for job, attempt in _expired_attempts(session, settings.lease_seconds):
                _expire(session, job, attempt, settings, done)
                session.commit()
    done.expired = _expire_old_artifacts(settings)
    done.sweep_trials = _advance_sweeps(settings)
    with session_scope() as session:
        if broker_came_back_empty():
            _forget_lost_messages(session)
            session.commit()
        forget_gone_workers(session)
        session.commit()
        due = _unclaimed_jobs(session, settings.requeue_after_seconds)
        for job in _lost_messages(session, due):
            count = job.enqueue_count
            if not _note_enqueue(session, job):
                continue  # another API process is sending it
            session.commit()
            if not enqueue_job(job.id, job.queue, attempt_time_limit(job.spec, settings)):
                # The broker is down: this send does not count, and the next pass tries again.
                _forget_enqueue(session, job.id, count)
                session.commit()
                break
            done.re_enqueued.append(job.id)
    done.dispatched = dispatch(settings)
    metrics.reconcile_pass(done)
    return done


def _advance_sweeps(settings: Settings) -> list[str]:
    """Each running sweep starts the trials it has room for (or ends), one transaction each."""
    started: list[str] = []
    with session_scope() as session:
        sweep_ids = list(session.scalars(select(Sweep.id).where(Sweep.status == "running")))
    for sweep_id in sweep_ids:
        with session_scope() as session:
            started += [trial.id for trial in advance_sweep(session, sweep_id, settings)]
            session.commit()
    return started  # they wait for a worker slot like any job: dispatched below


def _expire_old_artifacts(settings: Settings) -> list[str]:
    """Checkpoints (TAAS_CHECKPOINT_RETENTION_DAYS), then every artifact
    (TAAS_ARTIFACT_RETENTION_DAYS), of jobs that ended longer ago than their retention: rows
    first, files once that is committed."""
    keys: list[str] = []
    rules = (
        (settings.checkpoint_retention_days, ("checkpoint",), "CHECKPOINT"),
        (settings.artifact_retention_days, None, "ARTIFACT"),
    )
    for days, kinds, name in rules:
        if days is None:
            continue
        reason = f"the job ended more than {days:g} days ago (TAAS_{name}_RETENTION_DAYS)"
        with session_scope() as session:
            keys += expire_artifacts(session, utcnow() - timedelta(days=days), kinds, reason)
    storage = ArtifactStorage(store_for(settings))
    for key in keys:
        storage.delete(key)  # a store that is down leaves them to the daily collection
    return keys


def _expired_attempts(session: Session, lease_seconds: float) -> list[tuple[Job, Attempt]]:
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    return _live_attempts_where(session, Attempt.heartbeat_at < cutoff)


def _live_attempts_where(
    session: Session, condition: ColumnElement[bool]
) -> list[tuple[Job, Attempt]]:
    """Running or cancelling jobs, with their current attempt, where ``condition`` holds."""
    rows = session.execute(
        select(Job, Attempt)
        .join(Attempt, (Attempt.job_id == Job.id) & (Attempt.number == Job.attempt))
        .where(Job.status.in_(("running", "cancelling")), condition)
    ).all()
    return [(job, attempt) for job, attempt in rows]


def _overdue_attempts(session: Session, lease_seconds: float) -> list[tuple[Job, Attempt]]:
    """Current attempts a lease past their deadline: the worker had that long to stop at the
    limit and report the timeout itself."""
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    return _live_attempts_where(session, Attempt.deadline_at < cutoff)


def _time_out(
    session: Session, job: Job, attempt: Attempt, settings: Settings, done: Reconciled
) -> None:
    reason = (
        f"attempt {attempt.number} ran past its time limit of "
        f"{describe_time_limit(job.spec, settings)}, and its worker ({attempt.worker}) did not "
        "stop it"
    )
    if job.status == "cancelling":
        message = f"cancelled by the user; {reason}"
        if transition(session, job, ["cancelling"], "cancelled", **cancelled(message)):
            _end_attempt(session, job, attempt, message, "cancelled", attempt_status="timed_out")
            done.cancelled.append(job.id)
        return
    if transition(
        session,
        job,
        ["running"],
        "failed",
        finished_at=utcnow(),
        error_type="timeout",
        error_message=reason,
    ):
        _end_attempt(session, job, attempt, reason, "failed", attempt_status="timed_out")
        done.timed_out.append(job.id)


def _expire(
    session: Session, job: Job, attempt: Attempt, settings: Settings, done: Reconciled
) -> None:
    silent = (utcnow() - attempt.heartbeat_at).total_seconds()
    reason = (
        f"attempt {attempt.number} lost its worker ({attempt.worker}): "
        f"no heartbeat for {silent:.0f} s"
    )
    # Its writes may have been refused for lack of space rather than its worker lost: say so.
    storage_full = STORAGE_FULL_LOG.recent(silent + settings.lease_seconds)
    if storage_full is not None:
        reason += f"; {storage_full} when it last tried to report"
    now = utcnow()
    if job.status == "cancelling":
        message = f"cancelled by the user; {reason}"
        if transition(session, job, ["cancelling"], "cancelled", **cancelled(message)):
            _end_attempt(session, job, attempt, message, "cancelled")
            done.cancelled.append(job.id)
        return
    if job.attempt >= settings.max_attempts:
        message = f"{reason}; that was the last of {settings.max_attempts} attempts"
        if transition(
            session,
            job,
            ["running"],
            "failed",
            finished_at=now,
            error_type="infra",
            error_message=message,
        ):
            _end_attempt(session, job, attempt, message, "failed")
            done.failed.append(job.id)
        return
    if transition(session, job, ["running"], "queued", enqueued_at=None, enqueue_count=0):
        _end_attempt(session, job, attempt, f"{reason}; queued again", "queued")
        done.requeued.append(job.id)


def _end_attempt(
    session: Session,
    job: Job,
    attempt: Attempt,
    message: str,
    status: str,
    *,
    attempt_status: str = "lost",
) -> None:
    attempt.status, attempt.finished_at = attempt_status, utcnow()
    if attempt_status == "lost":
        metrics.lease_expired(session, job.queue)
    record_event(session, job, message, status=status, attempt=attempt.number)
    logger.warning("job %s: %s", job.id, message)


def _unclaimed_jobs(session: Session, requeue_after_seconds: float) -> list[Job]:
    """Queued jobs sent to the broker longer ago than their (growing) delay."""
    now = utcnow()
    # Only jobs past the shortest delay leave the database; the growing delay is checked below.
    oldest = now - timedelta(seconds=requeue_after_seconds)
    sent = session.scalars(
        select(Job).where(Job.status == "queued", Job.enqueued_at <= oldest)
    ).all()
    due = []
    for job in sent:
        backoff = min(2**job.enqueue_count, MAX_REQUEUE_BACKOFF)
        last = job.enqueued_at
        if last is not None and (now - last).total_seconds() >= requeue_after_seconds * backoff:
            due.append(job)
    return due


def _forget_lost_messages(session: Session) -> None:
    """The broker lost every message: each job sent and not claimed waits again, to be
    dispatched at once, instead of waiting out a growing delay meant for messages that merely
    wait their turn."""
    result = session.execute(
        update(Job)
        .where(Job.status == "queued")
        .values(enqueued_at=None, enqueue_count=0)
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count:
        logger.warning("the broker came back without its messages: sending %d jobs again", count)


def _lost_messages(session: Session, due: list[Job]) -> list[Job]:
    """The due jobs to send again: those of a queue that holds fewer messages than it has jobs
    sent and not claimed, that is where some message may have been lost. A broker that lost
    messages gets them back, while messages that merely wait for a worker are not copied."""
    resend: list[Job] = []
    for queue in sorted({job.queue for job in due}):
        waiting = queue_depth(queue)  # None: the broker does not answer; the send will tell
        if waiting is None or waiting < _sent_count(session, queue):
            resend += [job for job in due if job.queue == queue]
    return resend


def _sent_count(session: Session, queue: str) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.status == "queued", Job.queue == queue, Job.enqueued_at.is_not(None))
    )
    return int(count or 0)


def _note_enqueue(session: Session, job: Job) -> bool:
    """Claim this re-enqueue: a compare-and-set on the enqueue count, so that when several API
    processes reconcile at once only one sends the job again."""
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "queued", Job.enqueue_count == job.enqueue_count)
        .values(enqueued_at=utcnow(), enqueue_count=job.enqueue_count + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _forget_enqueue(session: Session, job_id: str, count: int) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(enqueued_at=None, enqueue_count=count)
        .execution_options(synchronize_session=False)
    )


class Reconciler:
    """Runs ``reconcile`` every ``reconcile_seconds`` in a daemon thread until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="taas-reconciler", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        # Workers could not heartbeat while this process (or its database) was away: give them
        # a whole lease to get through again before calling any of them lost.
        trusted_from = time.monotonic() + self.settings.lease_seconds
        # Several API processes each collect once a day, at different times of it.
        next_collection = time.monotonic() + random.uniform(0, STORAGE_GC_SECONDS)
        while not self.stopped.wait(self.settings.reconcile_seconds):
            if time.monotonic() >= next_collection:
                next_collection = time.monotonic() + STORAGE_GC_SECONDS
                _collect_storage_garbage(self.settings)
            try:
                reconcile(self.settings, expire_leases=time.monotonic() >= trusted_from)
            except Exception as error:  # a database hiccup must not end reconciling for good
                metrics.reconcile_pass(None)
                _log_failed_pass(error)
                trusted_from = time.monotonic() + self.settings.lease_seconds


def _collect_storage_garbage(settings: Settings) -> None:
    """Remove orphaned objects (``taas storage gc``); a failure waits for the next day."""
    try:
        collected = collect_garbage(store_for(settings), settings)
    except Exception as error:
        logger.warning("storage garbage collection failed: %r; next try in a day", error)
        return
    logger.info("storage garbage collection: deleted %s", collected.describe())


def _log_failed_pass(error: Exception) -> None:
    """A full disk or a database restart fails every pass until it is over: one line each, not
    a traceback."""
    reason = storage_full_reason(error)
    if reason is None and isinstance(error, DATABASE_UNAVAILABLE):
        logger.warning("reconcile pass failed: %s", describe_database_error(error))
        return
    if reason is None:
        logger.exception("reconcile pass failed; trying again next period")
        return
    STORAGE_FULL_LOG.note(reason)
    logger.error("reconcile pass failed: %s; trying again next period", reason)
