"""Routes the workers call (worker token). Each write names its attempt; stale ones get 409."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from taas.app.artifacts.dependencies import ObjectStoreDep, StorageDep
from taas.app.artifacts.models import Artifact
from taas.app.artifacts.service import (
    ARTIFACT_KINDS,
    check_artifact_name,
    check_checkpoint_name,
    check_sha256,
    latest_checkpoint,
)
from taas.app.auth.dependencies import SettingsDep, WorkerAuth
from taas.app.core.db import SessionDep
from taas.app.core.errors import InvalidInput, NotFound, PayloadTooLarge
from taas.app.core.openapi import error_responses
from taas.app.core.storage_space import require_room_for_new_work
from taas.app.internal import service
from taas.app.internal.recording import record_and_commit
from taas.app.internal.schemas import (
    Ack,
    ClaimRequest,
    ClaimResponse,
    DatasetRef,
    EventIn,
    FinishRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    MetricPointIn,
    ReleaseRequest,
)
from taas.app.jobs.models import Job
from taas.app.jobs.service import record_event
from taas.app.jobs.time_limits import attempt_time_limit, describe_time_limit
from taas.app.observability import request_context
from taas.app.scheduling.dispatch import dispatch
from taas.app.storage.objects import artifact_key, dataset_key
from taas.app.storage.responses import object_response
from taas.app.sweeps.controller import advance_sweep

# Every route names a job and, but for the claim, its attempt: a claim of a job that is not
# queued any more, or a write of an attempt that is not the job's current one, is a 409.
STALE = "the job is not queued (claim), or this attempt is not the job's current one any more"
router = APIRouter(
    prefix="/internal/v1/jobs",
    tags=["internal"],
    dependencies=[WorkerAuth],
    responses=error_responses({409: STALE}),
)
JobId = Annotated[str, Path(max_length=40)]
AttemptNumber = Annotated[int, Path(ge=1, le=1_000_000)]


@router.post(
    "/{job_id}/claim",
    response_model=ClaimResponse,
    responses={507: {"description": "storage is low: the job stays queued for later"}},
)
def claim(
    job_id: JobId, body: ClaimRequest, session: SessionDep, settings: SettingsDep
) -> ClaimResponse:
    # Space left goes to the attempts already running; the reconciler sends this job again.
    require_room_for_new_work(settings, f"claim of job {job_id[:64]}")
    job = service.claim_job(session, job_id, body.worker, settings)
    session.commit()
    request_context.bind(attempt=job.attempt)  # the attempt this claim started
    uploaded = service.uploaded_dataset(session, job)
    return ClaimResponse(
        job_id=job.id,
        attempt=job.attempt,
        spec=job.spec,
        heartbeat_seconds=settings.heartbeat_seconds,
        time_limit_seconds=attempt_time_limit(job.spec, settings),
        time_limit=describe_time_limit(job.spec, settings),
        dataset=None
        if uploaded is None
        else DatasetRef(
            id=uploaded.id,
            name=uploaded.name,
            sha256=uploaded.sha256,
            size_bytes=uploaded.size_bytes,
        ),
    )


@router.get(
    "/{job_id}/attempts/{attempt}/dataset",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_dataset(
    job_id: JobId,
    attempt: AttemptNumber,
    session: SessionDep,
    store: ObjectStoreDep,
    settings: SettingsDep,
) -> Response:
    """The canonical file of the uploaded dataset the live attempt trains on."""
    job, _ = service.current_attempt(session, job_id, attempt)
    dataset = service.uploaded_dataset(session, job)
    if dataset is None:
        raise NotFound(f"job {job_id} trains on the built-in {job.dataset!r}: nothing to fetch")
    return object_response(
        store,
        dataset_key(dataset.id),
        headers={"ETag": f'"{dataset.sha256}"', "X-Content-SHA256": dataset.sha256},
        missing=f"the file of dataset {dataset.id} is missing from storage",
        redirect=store.direct,
        url_seconds=settings.storage_url_seconds,
    )


@router.post("/{job_id}/attempts/{attempt}/heartbeat", response_model=HeartbeatResponse)
def heartbeat(
    job_id: JobId, attempt: AttemptNumber, body: HeartbeatRequest, session: SessionDep
) -> HeartbeatResponse:
    job = service.heartbeat(session, job_id, attempt, body)
    session.commit()
    return HeartbeatResponse(
        cancel=job.status == "cancelling", prune=job.stop_requested == "pruned"
    )


@router.post("/{job_id}/attempts/{attempt}/metrics", response_model=Ack)
def post_metrics(
    job_id: JobId, attempt: AttemptNumber, body: MetricPointIn, session: SessionDep
) -> Ack:
    service.add_metric_point(session, job_id, attempt, body)
    session.commit()
    return Ack()


@router.post("/{job_id}/attempts/{attempt}/events", response_model=Ack)
def post_event(job_id: JobId, attempt: AttemptNumber, body: EventIn, session: SessionDep) -> Ack:
    service.add_message(session, job_id, attempt, body.message)
    session.commit()
    return Ack()


# `:path`, so a name with "/" in it reaches check_artifact_name and gets its 422.
@router.put(
    "/{job_id}/attempts/{attempt}/artifacts/{name:path}",
    response_model=Ack,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_artifact(
    job_id: JobId,
    attempt: AttemptNumber,
    name: Annotated[str, Path(max_length=200)],
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    kind: Annotated[str, Query(max_length=32)] = "model",
    x_content_sha256: Annotated[str | None, Header(max_length=64)] = None,
) -> Ack:
    """Stream the body to storage while hashing; the row exists only once the bytes verified."""
    check_artifact_name(name)
    expected = check_sha256(x_content_sha256)
    if kind not in ARTIFACT_KINDS:
        raise InvalidInput(["query", "kind"], f"kind={kind!r}: one of {', '.join(ARTIFACT_KINDS)}")
    check_checkpoint_name(name, kind)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_artifact_bytes:
        raise PayloadTooLarge(
            f"artifact larger than the limit of {settings.max_artifact_bytes} bytes"
        )
    # Refuse a stale attempt before reading any bytes. The session is synchronous: keep its
    # calls off the event loop. Then give its connection back: the upload may stream for
    # minutes, and the pool must not run dry while it does.
    await run_in_threadpool(service.current_attempt, session, job_id, attempt)
    await run_in_threadpool(session.rollback)
    stored = await storage.put_stream(
        job_id, request.stream(), expected, settings.max_artifact_bytes
    )
    try:
        superseded = await run_in_threadpool(
            record_and_commit, session, job_id, attempt, name, kind, stored, settings
        )
    except BaseException:
        await run_in_threadpool(storage.delete, stored.key)
        raise
    for key in superseded:  # only after the commit: a failed commit keeps the old files
        await run_in_threadpool(storage.delete, key)
    return Ack()


@router.get(
    "/{job_id}/attempts/{attempt}/checkpoint",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        404: {"description": "no checkpoint yet: start from scratch"},
    },
)
def download_checkpoint(
    job_id: JobId,
    attempt: AttemptNumber,
    session: SessionDep,
    store: ObjectStoreDep,
    settings: SettingsDep,
) -> Response:
    """The job's latest checkpoint (from any earlier attempt), for the live attempt to resume.
    A checkpoint whose object vanished is forgotten (the events say so) and the one before it
    is tried; with none left, 404: the attempt starts over."""
    job, _ = service.current_attempt(session, job_id, attempt)
    while (checkpoint := latest_checkpoint(session, job_id)) is not None:
        key = artifact_key(checkpoint.storage_key)
        if store.stat(key) is not None:
            return object_response(
                store,
                key,
                headers={
                    "X-Content-SHA256": checkpoint.sha256,
                    "X-Artifact-Name": checkpoint.name,
                },
                missing=f"the file of {checkpoint.name} is missing from storage",
                redirect=store.direct,
                url_seconds=settings.storage_url_seconds,
            )
        _forget_vanished_checkpoint(session, job, checkpoint)
    raise NotFound(f"job {job_id} has no checkpoint yet")


def _forget_vanished_checkpoint(session: Session, job: Job, checkpoint: Artifact) -> None:
    """A checkpoint whose object is gone (deleted outside taas): its row goes, so the listing
    stops showing it, and the job's events say so."""
    record_event(
        session,
        job,
        f"{checkpoint.name} is missing from storage (deleted outside taas); "
        "resuming from an earlier checkpoint if one is kept, else from the beginning",
    )
    session.delete(checkpoint)
    session.commit()


@router.post("/{job_id}/attempts/{attempt}/release", response_model=Ack)
def release(
    job_id: JobId,
    attempt: AttemptNumber,
    body: ReleaseRequest,
    session: SessionDep,
    settings: SettingsDep,
) -> Ack:
    """The worker is shutting down (SIGTERM): the job goes back to the queue, to resume from
    its last checkpoint."""
    service.release_attempt(session, job_id, attempt, body.reason)
    session.commit()
    dispatch(settings)  # the job waits again, and its slot is free (for it or another)
    return Ack()


@router.post("/{job_id}/attempts/{attempt}/finish", response_model=Ack)
def finish(
    job_id: JobId,
    attempt: AttemptNumber,
    body: FinishRequest,
    session: SessionDep,
    settings: SettingsDep,
) -> Ack:
    job = service.finish_attempt(session, job_id, attempt, body)
    session.commit()
    if job.sweep_id is not None:  # its sweep's next trial starts now, not at the next pass
        advance_sweep(session, job.sweep_id, settings)
        session.commit()
    dispatch(settings)  # its slot is free
    return Ack()
