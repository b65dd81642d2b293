"""Workers send big files straight to the object store: the API hands out presigned URLs, then
checks and records what arrived. The bytes never pass through the API.

1. ``POST .../direct-uploads`` with the file's name, kind, size, sha256 and the sha256 of each
   part (PART_BYTES each): presigned PUT URLs that carry those checksums (the store refuses a
   part whose bytes differ), or ``direct: false`` where the store is the filesystem (upload
   through the API as before).
2. The worker PUTs each part, then ``POST .../direct-uploads/complete`` with the parts' ETags:
   the API assembles the object, verifies it, and records the artifact as an upload through the
   API would be recorded. Or ``.../abort`` after a failure, so nothing is left behind (and
   `taas storage gc` aborts what a vanished worker left unfinished).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from taas.app.artifacts.dependencies import ObjectStoreDep, StorageDep
from taas.app.artifacts.service import (
    ARTIFACT_KINDS,
    check_artifact_name,
    check_checkpoint_name,
)
from taas.app.artifacts.storage import StoredObject, new_storage_key
from taas.app.auth.dependencies import SettingsDep, WorkerAuth
from taas.app.core.config import Settings
from taas.app.core.db import SessionDep
from taas.app.core.errors import IntegrityFailure, InvalidInput, PayloadTooLarge
from taas.app.core.openapi import error_responses
from taas.app.internal import service
from taas.app.internal.recording import record_and_commit
from taas.app.internal.schemas import Ack
from taas.app.storage.objects import (
    MAX_ETAG_CHARS,
    MAX_PARTS,
    PART_BYTES,
    ObjectMissing,
    ObjectStore,
    artifact_key,
    part_count,
)

STALE = "the job is not queued (claim), or this attempt is not the job's current one any more"
router = APIRouter(
    prefix="/internal/v1/jobs",
    tags=["internal"],
    dependencies=[WorkerAuth],
    responses=error_responses({409: STALE, 503: "object storage is unavailable: retry later"}),
)
JobId = Annotated[str, Path(max_length=40)]
AttemptNumber = Annotated[int, Path(ge=1, le=1_000_000)]
SHA256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
STORAGE_KEY = re.compile(r"^(?P<job>[A-Za-z0-9_-]{1,40})/[0-9a-f]{32}$")


class FileDescription(BaseModel):
    name: Annotated[str, Field(max_length=200)]
    kind: Annotated[str, Field(max_length=32)] = "model"
    size_bytes: Annotated[int, Field(ge=0)]
    sha256: SHA256
    part_sha256: Annotated[list[SHA256], Field(min_length=1, max_length=MAX_PARTS)]


class PresignedPartOut(BaseModel):
    number: int
    url: str
    headers: dict[str, str]


class DirectUploadOut(BaseModel):
    direct: bool  # false: the store is the filesystem; PUT the file to the API instead
    part_bytes: int = PART_BYTES
    key: str | None = None
    upload_id: str | None = None
    parts: list[PresignedPartOut] = []


class CompletedUpload(FileDescription):
    key: Annotated[str, Field(max_length=80)]
    upload_id: Annotated[str | None, Field(max_length=1024)] = None
    etags: Annotated[
        list[Annotated[str, Field(max_length=MAX_ETAG_CHARS)]], Field(max_length=MAX_PARTS)
    ]


class AbortedUpload(BaseModel):
    key: Annotated[str, Field(max_length=80)]
    upload_id: Annotated[str | None, Field(max_length=1024)] = None


@router.post("/{job_id}/attempts/{attempt}/direct-uploads", response_model=DirectUploadOut)
def start_direct_upload(
    job_id: JobId,
    attempt: AttemptNumber,
    body: FileDescription,
    session: SessionDep,
    store: ObjectStoreDep,
    settings: SettingsDep,
) -> DirectUploadOut:
    _check_description(body, settings)
    service.current_attempt(session, job_id, attempt)
    session.rollback()  # no transaction held while the store answers
    if not store.direct:
        return DirectUploadOut(direct=False)
    storage_key = new_storage_key(job_id)
    upload = store.start_direct_upload(
        artifact_key(storage_key), body.part_sha256, settings.storage_url_seconds
    )
    return DirectUploadOut(
        direct=True,
        key=storage_key,
        upload_id=upload.upload_id,
        parts=[
            PresignedPartOut(number=part.number, url=part.url, headers=part.headers)
            for part in upload.parts
        ],
    )


@router.post("/{job_id}/attempts/{attempt}/direct-uploads/complete", response_model=Ack)
async def complete_direct_upload(
    job_id: JobId,
    attempt: AttemptNumber,
    body: CompletedUpload,
    session: SessionDep,
    store: ObjectStoreDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> Ack:
    """Assemble and verify the object, then record it; a stale attempt's or a corrupt object
    is deleted, and the answer says why."""
    _check_description(body, settings)
    _check_key(job_id, body.key)
    if len(body.etags) != len(body.part_sha256):
        raise InvalidInput(["body", "etags"], "give one ETag per part")
    await run_in_threadpool(service.current_attempt, session, job_id, attempt)
    await run_in_threadpool(session.rollback)
    key = artifact_key(body.key)
    stored = StoredObject(key=body.key, size_bytes=body.size_bytes, sha256=body.sha256)
    try:
        await run_in_threadpool(_assemble_and_verify, store, key, body)
        superseded = await run_in_threadpool(
            record_and_commit, session, job_id, attempt, body.name, body.kind, stored, settings
        )
    except BaseException:
        await run_in_threadpool(_discard, store, key, body.upload_id)
        raise
    for old in superseded:  # only after the commit: a failed commit keeps the old files
        await run_in_threadpool(storage.delete, old)
    return Ack()


@router.post("/{job_id}/attempts/{attempt}/direct-uploads/abort", response_model=Ack)
def abort_direct_upload(
    job_id: JobId, attempt: AttemptNumber, body: AbortedUpload, store: ObjectStoreDep
) -> Ack:
    """Forget an upload that failed: its parts and any object it made. Allowed for a stale
    attempt too (it cleans up after itself); the key must be of this job."""
    _check_key(job_id, body.key)
    _discard(store, artifact_key(body.key), body.upload_id)
    return Ack()


def _assemble_and_verify(store: ObjectStore, key: str, body: CompletedUpload) -> None:
    try:
        store.complete_direct_upload(key, body.upload_id, body.etags, body.part_sha256)
        store.verify(key, body.size_bytes, body.sha256, body.part_sha256)
    except ObjectMissing:
        raise IntegrityFailure(
            f"{body.name}: nothing arrived in storage under this upload (aborted, or the parts "
            "were never sent); start the upload again"
        ) from None


def _discard(store: ObjectStore, key: str, upload_id: str | None) -> None:
    if upload_id is not None:
        store.abort_upload(key, upload_id)
    store.delete(key)


def _check_description(body: FileDescription, settings: Settings) -> None:
    check_artifact_name(body.name)
    if body.kind not in ARTIFACT_KINDS:
        raise InvalidInput(
            ["body", "kind"], f"kind={body.kind!r}: one of {', '.join(ARTIFACT_KINDS)}"
        )
    check_checkpoint_name(body.name, body.kind)
    if body.size_bytes > settings.max_artifact_bytes:
        raise PayloadTooLarge(
            f"artifact larger than the limit of {settings.max_artifact_bytes} bytes"
        )
    if len(body.part_sha256) != part_count(body.size_bytes):
        raise InvalidInput(
            ["body", "part_sha256"],
            f"{body.size_bytes} bytes make {part_count(body.size_bytes)} parts of "
            f"{PART_BYTES} bytes; {len(body.part_sha256)} checksums were given",
        )


def _check_key(job_id: str, storage_key: str) -> None:
    match = STORAGE_KEY.match(storage_key)
    if match is None or match.group("job") != job_id:
        raise InvalidInput(["body", "key"], f"{storage_key[:80]!r} is no upload of job {job_id}")
