"""Job logic for the public API: submit, list, cancel, delete, describe. Flushes, never commits."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from taas.app.artifacts.checkpoints import checkpoint_epoch
from taas.app.artifacts.models import Artifact
from taas.app.auth.models import Tenant
from taas.app.core.config import Settings, get_settings
from taas.app.core.db import utcnow
from taas.app.core.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from taas.app.datasets.service import info_for_job, require_builtin_available
from taas.app.jobs.memory import check_fits_largest_worker
from taas.app.jobs.models import TERMINAL_STATUSES, Event, Job, MetricPoint, MetricStep
from taas.app.jobs.schemas import (
    ArtifactOut,
    CheckpointOut,
    EventOut,
    JobError,
    JobMetrics,
    JobOut,
    MetricPointOut,
    Progress,
    StepPointOut,
)
from taas.app.observability import metrics
from taas.app.scheduling.presence import waiting_for
from taas.app.spec import (
    JOB_ID_PATTERN,
    JobSpec,
    check_limits,
    dataset_info,
    normalized,
    parameter_count,
)
from taas.app.stream.service import delete_job_events, drop_superseded_progress, publish
from taas.app.webhooks.events import job_status_changed

QUEUE_FOR_DEVICE = {"cpu": "cpu", "cuda": "gpu"}
ACTIVE_JOB_STATUSES = ("queued", "running", "cancelling")


def new_job_id() -> str:
    return f"job_{secrets.token_hex(12)}"


def record_event(
    session: Session,
    job: Job,
    message: str,
    *,
    status: str | None = None,
    attempt: int | None = None,
) -> None:
    """Add to the job's history, and tell the live stream: a status change (and, for a terminal
    one, the job's end) or a log line. A status change also becomes webhook deliveries, written
    with it."""
    kind = "status" if status is not None else "message"
    row = Event(
        job_id=job.id,
        kind=kind,
        status=status,
        attempt=attempt,
        message=message,
        created_at=utcnow(),
    )
    session.add(row)
    said = {"attempt": attempt, "message": message, "created_at": row.created_at.isoformat()}
    if status is None:
        publish(session, job, "log", said)
        return
    publish(session, job, "status", {"status": status, **said})
    job_status_changed(session, job, status)
    if status in TERMINAL_STATUSES:
        publish(session, job, "end", job_outcome(job, status))
        drop_superseded_progress(session, job.id)


def job_outcome(job: Job, status: str) -> dict[str, Any]:
    """The ``end`` event: how the job ended, as far as the stream's readers need to know."""
    error = {"type": job.error_type, "message": job.error_message} if job.error_type else None
    return {
        "status": status,
        "error": error,
        "test_accuracy": job.test_accuracy,
        "test_loss": job.test_loss,
        "stop_reason": job.stop_reason,
    }


def transition(
    session: Session, job: Job, allowed_from: Iterable[str], new_status: str, **values: Any
) -> bool:
    """Compare-and-set the job's status, so concurrent writers (a cancel racing a finish) cannot
    overwrite each other: the update applies only if the status and attempt are still as read."""
    previous = job.status
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.attempt == job.attempt, Job.status.in_(list(allowed_from)))
        .values(status=new_status, **values)
        .execution_options(synchronize_session=False)
    )
    session.refresh(job)
    changed = bool(result.rowcount == 1)  # type: ignore[attr-defined]
    if changed:
        metrics.job_transitioned(session, job, previous, new_status)
    return changed


def cancelled(message: str) -> dict[str, Any]:
    """The columns of a job that ends cancelled: the user's cancel is its error class."""
    return {
        "finished_at": utcnow(),
        "stop_reason": "cancelled",
        "error_type": "cancelled",
        "error_message": message,
    }


def submit_job(session: Session, tenant: Tenant, spec: JobSpec, settings: Settings) -> Job:
    """Validate against the configured limits and store the job as ``queued``.

    The dataset is a built-in name or the id of one of the tenant's uploads; another tenant's
    upload is as unknown as a made-up name. A ``device: auto`` spec without a model bound for
    the GPU queue gets the GPU recipe here, before any check, so the stored spec is what runs."""
    spec = spec.for_auto_device(settings.auto_device)
    uploaded = info_for_job(session, tenant, spec.dataset)
    check_limits(spec, settings.limits, uploaded)
    info = uploaded or dataset_info(spec)
    check_fits_largest_worker(
        spec,
        info,
        cpu_bytes=settings.max_worker_memory_bytes,
        gpu_bytes=settings.max_gpu_memory_bytes,
        auto_device=settings.auto_device,
    )
    queue = QUEUE_FOR_DEVICE.get(spec.device, settings.default_queue)
    require_builtin_available(session, spec.dataset, settings, queue)
    _check_active_jobs(session, tenant, settings.max_active_jobs_per_tenant)
    stored_spec = normalized(spec)
    job = Job(
        id=new_job_id(),
        tenant_id=tenant.id,
        name=stored_spec["name"],
        status="queued",
        spec=stored_spec,
        dataset=spec.dataset,
        enqueued_at=None,  # waits for a free worker slot (app/scheduling/dispatch.py)
        priority=spec.priority,
        queue=queue,
        parameter_count=parameter_count(spec.model, info.shape, info.num_classes),
        epochs=spec.training.epochs,
    )
    session.add(job)
    session.flush()
    record_event(session, job, "job accepted and queued", status="queued")
    return job


def _check_active_jobs(session: Session, tenant: Tenant, most: int) -> None:
    """Refuse a new job while the tenant has ``most`` queued or running. Two submissions racing
    at the cap may both pass: the bound is for runaway scripts, not an exact quota."""
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.tenant_id == tenant.id, Job.status.in_(ACTIVE_JOB_STATUSES))
    )
    if (active or 0) >= most:
        raise TooManyRequests(
            f"this tenant already has {active} jobs queued or running, the most allowed "
            "(TAAS_MAX_ACTIVE_JOBS_PER_TENANT); wait for some to end or cancel some"
        )


def get_owned_job(session: Session, tenant: Tenant, job_id: str) -> Job:
    """The tenant's job; another tenant's job is indistinguishable from a missing one."""
    # Not a job id, not a query: PostgreSQL refuses some bytes (NUL) in query parameters.
    job = session.get(Job, job_id) if JOB_ID_PATTERN.match(job_id) else None
    if job is None or job.tenant_id != tenant.id:
        raise NotFound(f"job {job_id[:64]!r} not found")
    return job


def _encode_cursor(job: Job) -> str:
    raw = json.dumps({"c": job.created_at.isoformat(), "i": job.id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        created_at, job_id = datetime.fromisoformat(data["c"]), str(data["i"])
        if created_at.tzinfo is None:
            raise ValueError("naive datetime in cursor")
        # Convert here: a date that leaves datetime's range in UTC must be a 422, not a 500.
        created_at = created_at.astimezone(UTC)
    except (ValueError, KeyError, TypeError, UnicodeError, OverflowError, binascii.Error) as error:
        raise InvalidInput(
            ["query", "cursor"], "invalid cursor; use a next_cursor value"
        ) from error
    return created_at, job_id


def list_jobs(
    session: Session,
    tenant: Tenant,
    status: str | None,
    limit: int,
    cursor: str | None,
    sweep_id: str | None = None,
) -> tuple[list[Job], str | None]:
    """Newest first; the cursor is the (created_at, id) of the last job of the previous page."""
    query = select(Job).where(Job.tenant_id == tenant.id)
    if status is not None:
        query = query.where(Job.status == status)
    if sweep_id is not None:
        query = query.where(Job.sweep_id == sweep_id)
    if cursor is not None:
        created_at, job_id = _decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < job_id))
        )
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    jobs = list(session.scalars(query))
    next_cursor = _encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
    return jobs[:limit], next_cursor


def cancel_job(session: Session, job: Job) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop (``cancelling``)."""
    message = "cancelled by the user before it started"
    if transition(session, job, ["queued"], "cancelled", **cancelled(message)):
        record_event(session, job, message, status="cancelled")
    elif transition(session, job, ["running"], "cancelling"):
        record_event(session, job, "cancel requested; stopping", status="cancelling")
    elif job.is_terminal:
        raise Conflict(f"job {job.id} has already ended ({job.status})")
    session.flush()
    return job


def delete_job(session: Session, job: Job) -> None:
    """Delete the job's rows; the caller removes its files after the commit, so a failed commit
    never leaves rows pointing at deleted files."""
    if not job.is_terminal:
        raise Conflict(f"job {job.id} is {job.status}; cancel it and wait until it ends")
    for artifact in session.scalars(select(Artifact).where(Artifact.job_id == job.id)):
        session.delete(artifact)
    delete_job_events(session, job.id)
    session.delete(job)
    session.flush()


def metric_points(session: Session, job: Job) -> list[MetricPointOut]:
    query = select(MetricPoint).where(MetricPoint.job_id == job.id).order_by(MetricPoint.epoch)
    return [
        MetricPointOut.model_validate(point, from_attributes=True)
        for point in session.scalars(query)
    ]


def metric_steps(session: Session, job: Job) -> list[StepPointOut]:
    """The step-granularity series: training loss points and evaluations, in step order."""
    query = (
        select(MetricStep)
        .where(MetricStep.job_id == job.id)
        .order_by(MetricStep.step, MetricStep.kind.desc())  # at one step: train, then eval
    )
    return [
        StepPointOut.model_validate(point, from_attributes=True) for point in session.scalars(query)
    ]


def events(session: Session, job: Job) -> list[EventOut]:
    query = select(Event).where(Event.job_id == job.id).order_by(Event.id)
    return [
        EventOut.model_validate(event, from_attributes=True) for event in session.scalars(query)
    ]


def artifacts(session: Session, job: Job) -> list[ArtifactOut]:
    query = select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name)
    return [
        ArtifactOut.model_validate(item, from_attributes=True) for item in session.scalars(query)
    ]


def checkpoints(session: Session, job: Job) -> list[CheckpointOut]:
    """The job's kept checkpoints, oldest epoch first, each with the metrics of its epoch."""
    query = select(Artifact).where(Artifact.job_id == job.id, Artifact.kind == "checkpoint")
    kept = sorted(session.scalars(query), key=checkpoint_epoch)
    points = {point.epoch: point for point in metric_points(session, job)}
    per_epoch = job.progress_batches_per_epoch
    return [
        CheckpointOut(
            epoch=(epoch := checkpoint_epoch(artifact)),
            step=epoch * per_epoch if per_epoch else None,
            metrics=points.get(epoch),
            name=artifact.name,
            size_bytes=artifact.size_bytes,
            sha256=artifact.sha256,
            created_at=artifact.created_at,
        )
        for artifact in kept
    ]


def etag_matches(if_none_match: str | None, sha256: str) -> bool:
    """RFC 9110 weak comparison: `*`, or any listed tag (weak or strong) equal to ours."""
    if if_none_match is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or f'"{sha256}"' in tags


def get_artifact(session: Session, job: Job, name: str) -> Artifact:
    artifact = session.scalar(
        select(Artifact).where(Artifact.job_id == job.id, Artifact.name == name)
    )
    if artifact is None:
        raise NotFound(f"job {job.id} has no artifact {name[:100]!r}")
    return artifact


def describe_job(session: Session, job: Job) -> JobOut:
    latest = session.scalar(
        select(MetricPoint)
        .where(MetricPoint.job_id == job.id)
        .order_by(MetricPoint.epoch.desc())
        .limit(1)
    )
    names = session.scalars(
        select(Artifact.name).where(Artifact.job_id == job.id).order_by(Artifact.name)
    )
    fraction = 1.0 if job.status == "succeeded" else min(job.progress_fraction, 1.0)
    return JobOut(
        id=job.id,
        name=job.name,
        status=job.status,
        spec=JobSpec.model_validate(job.spec),
        attempt=job.attempt,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=describe_progress(job, fraction),
        metrics=JobMetrics(
            latest=MetricPointOut.model_validate(latest, from_attributes=True) if latest else None,
            test_accuracy=job.test_accuracy,
            test_loss=job.test_loss,
        ),
        error=JobError(type=job.error_type, message=job.error_message or "")
        if job.error_type
        else None,
        artifacts=list(names),
        parameter_count=job.parameter_count,
        device=job.device,
        acceleration=job.acceleration,
        stop_reason=job.stop_reason,
        waiting_for=_waiting_for(session, job),
        sweep_id=job.sweep_id,
        trial_number=job.trial_number,
        params=job.params,
    )


def _waiting_for(session: Session, job: Job) -> str | None:
    if job.status != "queued":
        return None
    sent = job.enqueued_at is not None
    return waiting_for(session, job.queue, sent, get_settings().presence_seconds)


def describe_progress(job: Job, fraction: float) -> Progress:
    """Where the job is; the within-epoch fields only while an attempt is running."""
    live = job.status in ("running", "cancelling")
    return Progress(
        epoch=job.progress_epoch,
        epochs=job.epochs,
        fraction=fraction,
        batches_done=job.progress_batches if live else None,
        batches_per_epoch=job.progress_batches_per_epoch,
        samples_per_second=job.samples_per_second,
        eta_seconds=job.eta_seconds if live else None,
        updated_at=job.progress_at,
    )
