"""Public job routes (HTTP only: parsing, status codes, headers; logic lives in service.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status
from fastapi.responses import FileResponse
from sqlalchemy.exc import IntegrityError

from taas.app.artifacts.dependencies import ObjectStoreDep, StorageDep
from taas.app.artifacts.service import check_artifact_name, check_range_header
from taas.app.auth.dependencies import CurrentTenant, SettingsDep
from taas.app.core.db import SessionDep
from taas.app.core.errors import InvalidInput, NotFound
from taas.app.core.openapi import error_responses
from taas.app.core.storage_space import require_room_for_new_work
from taas.app.jobs import idempotency, service
from taas.app.jobs.models import Job
from taas.app.jobs.schemas import (
    ArtifactList,
    CheckpointList,
    EventList,
    JobList,
    JobOut,
    JobStatus,
    MetricList,
    StepList,
)
from taas.app.scheduling.dispatch import dispatch
from taas.app.spec import JobSpec
from taas.app.storage.objects import artifact_key
from taas.app.storage.responses import object_response

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
NO_SUCH_JOB = {404: "no such job for this tenant"}
NOT_FOUND = error_responses(NO_SUCH_JOB)
JobId = Annotated[str, Path(max_length=200, description="the job id, `job_...`")]


def valid_owned_job(job_id: JobId, session: SessionDep, tenant: CurrentTenant) -> Job:
    """The tenant's job, or 404: every route below reuses this one ownership check."""
    return service.get_owned_job(session, tenant, job_id)


OwnedJob = Annotated[Job, Depends(valid_owned_job)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobOut,
    responses=error_responses(
        {
            409: "the Idempotency-Key was used for another body",
            422: "the spec does not validate, breaks a limit of this server, names an unknown "
            "dataset or does not fit its input; each item names the field",
            429: "the tenant has the most jobs queued or running it may have",
            507: "a storage location is below TAAS_MIN_FREE_BYTES; the detail says",
        }
    ),
)
def submit_job(
    spec: JobSpec,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=idempotency.MAX_KEY_LENGTH,
            description="retry-safe submit: the same key and body return the same job",
        ),
    ] = None,
) -> JobOut:
    if idempotency_key is not None:
        replayed = _replayed(session, tenant, spec, idempotency_key, settings)
        if replayed is not None:
            response.headers["Idempotent-Replayed"] = "true"
            return service.describe_job(session, replayed)
    require_room_for_new_work(settings, "new job")
    job = service.submit_job(session, tenant, spec, settings)
    if idempotency_key is not None:
        idempotency.remember(session, tenant, idempotency_key, idempotency.request_hash(spec), job)
    try:
        session.commit()
    except IntegrityError:
        # The same key arrived twice at once and the other request won: answer with its job.
        session.rollback()
        replayed = _replayed(session, tenant, spec, idempotency_key or "", settings)
        if replayed is None:
            raise
        response.headers["Idempotent-Replayed"] = "true"
        return service.describe_job(session, replayed)
    # Only after the commit: a worker must never receive an id the database does not have yet.
    # It waits in the database until a worker slot is free and it is the fairest job to run.
    dispatch(settings)
    session.refresh(job)
    return service.describe_job(session, job)


def _replayed(
    session: SessionDep, tenant: CurrentTenant, spec: JobSpec, key: str, settings: SettingsDep
) -> Job | None:
    idempotency.check_key(key)
    digest = idempotency.request_hash(spec)
    return idempotency.replayed_job(session, tenant, key, digest, settings.idempotency_ttl_seconds)


@router.get("", response_model=JobList)
def list_jobs(
    session: SessionDep,
    tenant: CurrentTenant,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    sweep_id: Annotated[
        str | None, Query(max_length=100, description="only the trials of this sweep")
    ] = None,
) -> JobList:
    jobs, next_cursor = service.list_jobs(session, tenant, status, limit, cursor, sweep_id)
    return JobList(
        items=[service.describe_job(session, job) for job in jobs], next_cursor=next_cursor
    )


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
def get_job(job: OwnedJob, session: SessionDep) -> JobOut:
    return service.describe_job(session, job)


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=error_responses({**NO_SUCH_JOB, 409: "the job already ended"}),
)
def cancel_job(job: OwnedJob, session: SessionDep, settings: SettingsDep) -> JobOut:
    service.cancel_job(session, job)
    session.commit()
    dispatch(settings)  # a queued job already sent to a worker held a slot
    return service.describe_job(session, job)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses({**NO_SUCH_JOB, 409: "the job has not ended"}),
)
def delete_job(job: OwnedJob, session: SessionDep, storage: StorageDep) -> Response:
    service.delete_job(session, job)
    session.commit()
    storage.delete_job_files(job.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{job_id}/metrics", response_model=MetricList | StepList, responses=NOT_FOUND)
def job_metrics(
    job: OwnedJob,
    session: SessionDep,
    granularity: Annotated[
        Literal["epoch", "step"],
        Query(
            description="epoch: one point per epoch; step: the training loss every few steps "
            "(at most about 500 points) and every evaluation"
        ),
    ] = "epoch",
) -> MetricList | StepList:
    if granularity == "step":
        return StepList(items=service.metric_steps(session, job))
    return MetricList(items=service.metric_points(session, job))


@router.get("/{job_id}/events", response_model=EventList, responses=NOT_FOUND)
def job_events(job: OwnedJob, session: SessionDep) -> EventList:
    return EventList(items=service.events(session, job))


@router.get("/{job_id}/artifacts", response_model=ArtifactList, responses=NOT_FOUND)
def job_artifacts(job: OwnedJob, session: SessionDep) -> ArtifactList:
    return ArtifactList(items=service.artifacts(session, job))


@router.get(
    "/{job_id}/checkpoints",
    response_model=CheckpointList,
    responses=NOT_FOUND,
    description="The job's kept checkpoints (a new attempt resumes from the last): the epoch "
    "and step each was saved at, that epoch's metrics, and the artifact to download.",
)
def job_checkpoints(job: OwnedJob, session: SessionDep) -> CheckpointList:
    return CheckpointList(items=service.checkpoints(session, job))


@router.get(
    # `:path`, so a name with "/" in it reaches the lookup (and its 404 names it) instead of
    # falling through to a bare "Not Found".
    "/{job_id}/artifacts/{name:path}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"},
        206: {"description": "the requested byte range"},
        307: {"description": "TAAS_STORAGE_DOWNLOADS=redirect: a presigned URL of the store"},
        304: {"description": "If-None-Match matched the ETag"},
        **error_responses({**NO_SUCH_JOB, 400: "a malformed Range header"}),
    },
)
def download_artifact(
    job: OwnedJob,
    name: Annotated[str, Path(max_length=200)],
    session: SessionDep,
    store: ObjectStoreDep,
    settings: SettingsDep,
    # Room for the list of tags a cache holding many versions sends (each of ours is 66 chars).
    if_none_match: Annotated[str | None, Header(max_length=8192)] = None,
    range_header: Annotated[str | None, Header(alias="range", max_length=1000)] = None,
) -> Response:
    check_range_header(range_header)  # FileResponse would answer a malformed one in plain text
    try:
        check_artifact_name(name)
    except InvalidInput:
        # No upload can have had this name, so don't look it up: PostgreSQL refuses a NUL byte.
        raise NotFound(f"job {job.id} has no artifact {name[:100]!r}") from None
    artifact = service.get_artifact(session, job, name)
    etag = f'"{artifact.sha256}"'
    if service.etag_matches(if_none_match, artifact.sha256):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return object_response(
        store,
        artifact_key(artifact.storage_key),
        headers={"ETag": etag, "X-Content-SHA256": artifact.sha256},
        missing=f"the file of artifact {artifact.name!r} is missing from storage",
        redirect=settings.storage_downloads == "redirect",
        url_seconds=settings.storage_url_seconds,
        filename=artifact.name,
        range_header=range_header,
    )
