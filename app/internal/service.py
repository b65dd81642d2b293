"""What workers do to jobs: claim, heartbeat, report metrics, finish. Flushes, never commits.

Every write names its attempt; a write from an attempt that is no longer the job's current,
running attempt is refused (fencing), so a worker that lost its job cannot overwrite the result.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taas.app.artifacts.models import Artifact
from taas.app.core.config import Settings
from taas.app.core.db import utcnow
from taas.app.core.errors import Conflict, NotFound
from taas.app.datasets.models import Dataset
from taas.app.internal.schemas import FinishRequest, HeartbeatRequest, MetricPointIn, StepPointIn
from taas.app.jobs.models import Attempt, Job, MetricPoint, MetricStep
from taas.app.jobs.service import cancelled, describe_progress, record_event, transition
from taas.app.jobs.time_limits import attempt_time_limit, describe_time_limit
from taas.app.observability import metrics
from taas.app.spec import DATASET_ID_PATTERN, JOB_ID_PATTERN
from taas.app.stream.service import publish
from taas.app.sweeps.models import Sweep
from taas.app.sweeps.pruning import prune_reason

logger = logging.getLogger(__name__)
ACTIVE_STATUSES = ("running", "cancelling")
REQUIRED_MODEL_FILES = ("model.json", "model.safetensors")
# A job's step series keeps at most this many points: the worker sends about 500 train points
# and every evaluation (200 epochs of 20 make 4,000); this bounds what a misbehaving one stores.
MAX_STEP_POINTS = 10_000


def _job(session: Session, job_id: str, *, lock: bool = False) -> Job:
    # Not a job id, not a query: PostgreSQL refuses some bytes (NUL) in query parameters.
    job = (
        session.get(Job, job_id, populate_existing=lock, with_for_update=lock)
        if JOB_ID_PATTERN.match(job_id)
        else None
    )
    if job is None:
        raise NotFound(f"job {job_id[:64]!r} not found")
    return job


def claim_job(session: Session, job_id: str, worker: str, settings: Settings) -> Job:
    """Move a queued job to running as attempt n+1. Compare-and-set, so only one worker wins.
    The attempt must end within the job's time limit, counted from now."""
    job = _job(session, job_id)
    now = utcnow()
    if not transition(session, job, ["queued"], "running", attempt=job.attempt + 1, started_at=now):
        raise Conflict(f"job {job_id} is {job.status}, not queued")
    deadline = now + timedelta(seconds=attempt_time_limit(job.spec, settings))
    session.add(Attempt(job_id=job.id, number=job.attempt, worker=worker, deadline_at=deadline))
    record_event(
        session,
        job,
        f"attempt {job.attempt} started on {worker}; "
        f"time limit {describe_time_limit(job.spec, settings)}",
        status="running",
        attempt=job.attempt,
    )
    session.flush()
    return job


def uploaded_dataset(session: Session, job: Job) -> Dataset | None:
    """The uploaded dataset the job trains on; None for a built-in."""
    if not DATASET_ID_PATTERN.match(job.dataset):
        return None
    dataset = session.get(Dataset, job.dataset)
    if dataset is None or dataset.tenant_id != job.tenant_id:
        raise NotFound(f"dataset {job.dataset} of job {job.id} no longer exists")
    return dataset


def current_attempt(
    session: Session, job_id: str, attempt: int, *, lock: bool = False
) -> tuple[Job, Attempt]:
    """The job and attempt a worker writes for, if that attempt is still the live one. With
    ``lock`` the job row is re-read and locked until the commit (SELECT ... FOR UPDATE)."""
    job = _job(session, job_id, lock=lock)
    if job.attempt != attempt or job.status not in ACTIVE_STATUSES:
        raise Conflict(f"attempt {attempt} of job {job_id} is stale (job is {job.status})")
    row = session.scalar(select(Attempt).where(Attempt.job_id == job_id, Attempt.number == attempt))
    if row is None:
        raise Conflict(f"attempt {attempt} of job {job_id} does not exist")
    return job, row


def heartbeat(session: Session, job_id: str, attempt: int, beat: HeartbeatRequest) -> Job:
    """Renew the attempt's lease and record progress and step points (each told to the live
    stream); returns the job, whose status says whether the user asked to cancel. The job row
    is locked: progress only grows (a max of what is stored and what is told), and two reports
    of one job written at once would each keep their own, the later commit winning."""
    job, row = current_attempt(session, job_id, attempt, lock=True)
    row.heartbeat_at = utcnow()
    # The live attempt's device and plan (a new attempt may run elsewhere); its finish replaces
    # them with the final report.
    if beat.device is not None:
        job.device = beat.device
    if beat.acceleration is not None:
        job.acceleration = beat.acceleration
    job.progress_epoch = max(job.progress_epoch, beat.epoch)
    job.progress_fraction = max(job.progress_fraction, beat.fraction)
    if beat.batches_per_epoch is not None:
        _record_live_progress(session, job, beat)
    _record_steps(session, job, attempt, beat.points)
    session.flush()
    return job


def _record_live_progress(session: Session, job: Job, beat: HeartbeatRequest) -> None:
    job.progress_batches, job.progress_batches_per_epoch = beat.batches_done, beat.batches_per_epoch
    job.samples_per_second, job.eta_seconds = beat.samples_per_second, beat.eta_seconds
    job.progress_at = utcnow()
    progress = describe_progress(job, min(job.progress_fraction, 1.0))
    publish(session, job, "progress", progress.model_dump(mode="json", exclude={"updated_at"}))


def _record_steps(session: Session, job: Job, attempt: int, points: list[StepPointIn]) -> None:
    """Store the step points this job does not have yet (a resumed attempt repeats the steps
    after its checkpoint; the first report stays), up to MAX_STEP_POINTS per job."""
    if not points:
        return
    steps = {point.step for point in points}
    rows = session.execute(
        select(MetricStep.kind, MetricStep.step).where(
            MetricStep.job_id == job.id, MetricStep.step.in_(steps)
        )
    )
    known = {(kind, step) for kind, step in rows}
    stored = session.scalar(select(func.count()).where(MetricStep.job_id == job.id)) or 0
    for point in points:
        if (point.kind, point.step) in known:
            continue
        if stored >= MAX_STEP_POINTS:
            logger.warning("job %s: step series full (%d points); dropped", job.id, stored)
            return
        known.add((point.kind, point.step))
        stored += 1
        session.add(MetricStep(job_id=job.id, attempt=attempt, **point.model_dump()))
        publish(session, job, "metric", {"granularity": "step", **point.model_dump()})


def add_metric_point(session: Session, job_id: str, attempt: int, point: MetricPointIn) -> None:
    """Store one epoch's metrics; the same epoch posted again (a retry) changes nothing. The
    job row is locked, as for a heartbeat: both raise its progress."""
    job, row = current_attempt(session, job_id, attempt, lock=True)
    exists = session.scalar(
        select(MetricPoint.id).where(MetricPoint.job_id == job_id, MetricPoint.epoch == point.epoch)
    )
    if exists is None:
        session.add(MetricPoint(job_id=job_id, attempt=attempt, **point.model_dump()))
        publish(session, job, "metric", {"granularity": "epoch", **point.model_dump()})
        metrics.epoch_reported(session, job.queue, point.samples_per_second, point.epoch_seconds)
        if job.sweep_id is not None:
            session.flush()
            _consider_pruning(session, job, point.epoch)
    row.heartbeat_at = utcnow()
    job.progress_epoch = max(job.progress_epoch, point.epoch)
    job.progress_fraction = max(job.progress_fraction, min(point.epoch / job.epochs, 1.0))
    session.flush()


def _consider_pruning(session: Session, job: Job, epoch: int) -> None:
    """A sweep's trial that falls behind its sweep's others is asked to stop (app/sweeps)."""
    sweep = session.get(Sweep, job.sweep_id)
    if sweep is None or job.stop_requested is not None:
        return
    reason = prune_reason(session, sweep, job, epoch)
    if reason is not None:
        job.stop_requested = "pruned"
        record_event(session, job, reason, attempt=job.attempt)


def add_message(session: Session, job_id: str, attempt: int, message: str) -> None:
    job, _ = current_attempt(session, job_id, attempt)
    record_event(session, job, message, attempt=attempt)
    session.flush()


def finish_attempt(session: Session, job_id: str, attempt: int, result: FinishRequest) -> Job:
    """Record the attempt's outcome; the job becomes terminal and never changes again."""
    job, row = current_attempt(session, job_id, attempt)
    if result.status == "succeeded":
        _require_model_files(session, job_id, attempt)
    now = utcnow()
    finished = transition(
        session,
        job,
        ACTIVE_STATUSES,
        result.status,
        finished_at=now,
        test_accuracy=result.test_accuracy,
        test_loss=result.test_loss,
        stop_reason=result.stop_reason,
        device=result.device,
        acceleration=result.acceleration,
        **_error_columns(job, result),
    )
    if not finished:
        raise Conflict(f"attempt {attempt} of job {job_id} is stale (job is {job.status})")
    row.status, row.finished_at = result.status, now
    record_event(session, job, _outcome(job, result), status=result.status, attempt=attempt)
    session.flush()
    return job


# What each way of stopping means, for the event that ends a job (its status is said beside it).
STOPPED_BECAUSE = {
    "completed": "every epoch ran",
    "target_reached": "the target accuracy was reached",
    "max_seconds": "its time budget (training.max_seconds) ran out; the best model is kept",
    "pruned": "its sweep pruned it",
    "cancelled": "cancelled",
}


def _outcome(job: Job, result: FinishRequest) -> str:
    """The ending event's message: what the job achieved or why it failed, never the bare
    status again ("succeeded: succeeded")."""
    if result.status == "failed":
        return f"failed ({job.error_type}): {job.error_message}"
    if result.test_accuracy is None:
        return job.error_message or result.status
    stopped = STOPPED_BECAUSE.get(result.stop_reason or "", result.stop_reason or "")
    loss = "" if result.test_loss is None else f", test loss {result.test_loss:.4f}"
    return f"test accuracy {result.test_accuracy:.4f}{loss}" + (f"; {stopped}" if stopped else "")


def _error_columns(job: Job, result: FinishRequest) -> dict[str, Any]:
    """What the job's error says: the worker's failure, the user's cancel, or nothing."""
    if result.status == "failed":
        return {
            "error_type": result.error_type or "internal",
            "error_message": result.error_message or "the worker reported a failure",
        }
    if result.status == "cancelled":
        return {
            "error_type": "cancelled",
            "error_message": f"cancelled by the user; it stopped after epoch {job.progress_epoch}",
        }
    return {"error_type": None, "error_message": None}


def release_attempt(session: Session, job_id: str, attempt: int, reason: str) -> Job | None:
    """The worker gives the job back (it is shutting down): the attempt ends as ``released`` and
    the job is queued again, to resume from its last checkpoint on any worker. A job being
    cancelled ends cancelled instead. Returns the job when it waits again for a worker."""
    job, row = current_attempt(session, job_id, attempt)
    now = utcnow()
    row.status, row.finished_at = "released", now
    message = f"cancelled by the user; its worker stopped early ({reason})"
    if transition(session, job, ["cancelling"], "cancelled", **cancelled(message)):
        record_event(session, job, message, status="cancelled", attempt=attempt)
        return None
    if not transition(session, job, ["running"], "queued", enqueued_at=None, enqueue_count=0):
        raise Conflict(f"attempt {attempt} of job {job_id} is stale (job is {job.status})")
    record_event(
        session,
        job,
        f"attempt {attempt} gave the job back: {reason}; queued again",
        status="queued",
        attempt=attempt,
    )
    session.flush()
    return job


def _require_model_files(session: Session, job_id: str, attempt: int) -> None:
    names = set(
        session.scalars(
            select(Artifact.name).where(Artifact.job_id == job_id, Artifact.attempt == attempt)
        )
    )
    missing = [name for name in REQUIRED_MODEL_FILES if name not in names]
    if missing:
        raise Conflict(f"cannot succeed without {', '.join(missing)} uploaded by this attempt")
