"""Datasets put straight into object storage, for files larger than the API takes in a request.

1. ``POST /v1/dataset-uploads`` with the file's name, size, sha256 and the sha256 of each part
   (PART_BYTES each): presigned PUT URLs, one per part, valid for
   TAAS_STORAGE_UPLOAD_URL_SECONDS.
2. The client PUTs each part to its URL (the store checks each part's checksum).
3. ``POST /v1/dataset-uploads/{id}/complete`` with the parts' ETags: the API assembles the
   object, verifies it, streams it to a local file and validates it exactly as an upload to
   ``POST /v1/datasets`` is validated; the raw file is then deleted. The answer is the dataset.
   ``DELETE /v1/dataset-uploads/{id}`` gives up on an upload and deletes what was sent.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from taas.app.artifacts.dependencies import ObjectStoreDep
from taas.app.auth.dependencies import CurrentTenant, SettingsDep
from taas.app.auth.models import Tenant
from taas.app.core.config import Settings
from taas.app.core.db import SessionDep, utcnow
from taas.app.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from taas.app.core.openapi import error_responses
from taas.app.core.storage_space import require_room_for_new_work
from taas.app.datasets import service
from taas.app.datasets.decode_memory import require_memory_to_decode
from taas.app.datasets.dependencies import DatasetStorageDep
from taas.app.datasets.ingest import IngestOptions
from taas.app.datasets.models import Dataset, DatasetUpload
from taas.app.datasets.router import (
    UploadDescription,
    default_name,
    image_size,
    store_upload,
)
from taas.app.datasets.schemas import DatasetOut
from taas.app.storage.objects import (
    MAX_ETAG_CHARS,
    MAX_PARTS,
    PART_BYTES,
    ObjectStore,
    StorageUnavailable,
    part_count,
    upload_key,
)

router = APIRouter(prefix="/v1/dataset-uploads", tags=["datasets"])
NO_SUCH_UPLOAD = {404: "no such upload for this tenant (completed, aborted or expired)"}
UploadId = Annotated[str, Path(max_length=40, pattern=r"^up_[0-9a-f]{24}$")]
SHA256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class UploadRequest(BaseModel):
    filename: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str | None, Field(max_length=100)] = None
    size_bytes: Annotated[int, Field(ge=1)]
    sha256: SHA256
    part_sha256: Annotated[list[SHA256], Field(min_length=1, max_length=MAX_PARTS)]
    label_column: Annotated[str | None, Field(max_length=200)] = None
    image_size: Annotated[str | None, Field(max_length=20, description="zip: HxW")] = None


class PartOut(BaseModel):
    number: int
    url: str
    headers: dict[str, str] = Field(description="send these headers with the PUT")


class UploadOut(BaseModel):
    id: str
    part_bytes: int = Field(description="every part but the last has this many bytes")
    parts: list[PartOut]
    expires_at: datetime


class CompleteRequest(BaseModel):
    etags: Annotated[
        list[Annotated[str, Field(max_length=MAX_ETAG_CHARS)]],
        Field(max_length=MAX_PARTS, description="the ETag header of each part's PUT, in order"),
    ]


def owned_upload(upload_id: UploadId, session: SessionDep, tenant: CurrentTenant) -> DatasetUpload:
    """The tenant's unexpired upload; another tenant's is indistinguishable from a missing one
    (checked before the body is, so its 404 comes first)."""
    upload = session.get(DatasetUpload, upload_id)
    if upload is None or upload.tenant_id != tenant.id or upload.expires_at < utcnow():
        raise NotFound(f"upload {upload_id!r} not found (completed, aborted or expired)")
    return upload


OwnedUpload = Annotated[DatasetUpload, Depends(owned_upload)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadOut,
    responses=error_responses(
        {
            409: "the store is the filesystem: upload through POST /v1/datasets",
            413: "larger than TAAS_MAX_DIRECT_UPLOAD_BYTES",
            503: "object storage is unavailable: retry later",
        }
    ),
)
def start_upload(
    body: UploadRequest,
    tenant: CurrentTenant,
    session: SessionDep,
    store: ObjectStoreDep,
    settings: SettingsDep,
) -> UploadOut:
    if not store.direct:
        raise Conflict(
            "presigned uploads need object storage (TAAS_STORAGE_URL=s3://...); this server "
            "keeps files on its disk: upload through POST /v1/datasets"
        )
    _check_request(body, settings)
    require_room_for_new_work(settings, "dataset upload")  # validation stages it locally
    upload_id = f"up_{secrets.token_hex(12)}"
    direct = store.start_direct_upload(
        upload_key(upload_id), body.part_sha256, settings.storage_upload_url_seconds
    )
    upload = DatasetUpload(
        id=upload_id,
        tenant_id=tenant.id,
        name=body.name or default_name(body.filename),
        filename=body.filename,
        options={"label_column": body.label_column, "image_size": body.image_size},
        size_bytes=body.size_bytes,
        sha256=body.sha256,
        part_sha256=body.part_sha256,
        store_upload_id=direct.upload_id,
        expires_at=utcnow() + timedelta(seconds=settings.storage_upload_url_seconds),
    )
    session.add(upload)
    session.commit()
    return UploadOut(
        id=upload_id,
        part_bytes=PART_BYTES,
        parts=[PartOut(number=p.number, url=p.url, headers=p.headers) for p in direct.parts],
        expires_at=upload.expires_at,
    )


@router.post(
    "/{upload_id}/complete",
    response_model=DatasetOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "the same bytes were uploaded before: that dataset"},
        **error_responses(
            {
                **NO_SUCH_UPLOAD,
                422: "the parts do not add up to the file declared, or it is no valid dataset",
            }
        ),
    },
)
async def complete_upload(
    upload: OwnedUpload,
    body: CompleteRequest,
    response: Response,
    tenant: CurrentTenant,
    session: SessionDep,
    store: ObjectStoreDep,
    storage: DatasetStorageDep,
    settings: SettingsDep,
) -> DatasetOut:
    if len(body.etags) != len(upload.part_sha256):
        raise InvalidInput(
            ["body", "etags"], f"give the ETag of each of the {len(upload.part_sha256)} parts"
        )
    require_room_for_new_work(settings, "dataset upload")
    dataset, created = await run_in_threadpool(
        _validate_and_store, session, tenant, store, storage, upload, body.etags, settings
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return service.describe_upload(dataset)


@router.delete(
    "/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(NO_SUCH_UPLOAD),
)
def abort_upload(upload: OwnedUpload, session: SessionDep, store: ObjectStoreDep) -> Response:
    discard_upload(store, upload)
    session.delete(upload)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def discard_upload(store: ObjectStore, upload: DatasetUpload) -> None:
    """Whatever of the upload reached the store: its parts, or the assembled object."""
    key = upload_key(upload.id)
    if upload.store_upload_id is not None:
        store.abort_upload(key, upload.store_upload_id)
    store.delete(key)


def _validate_and_store(
    session: Session,
    tenant: Tenant,
    store: ObjectStore,
    storage: DatasetStorageDep,
    upload: DatasetUpload,
    etags: list[str],
    settings: Settings,
) -> tuple[Dataset, bool]:
    """Assemble the object, then stream it once to a local file (never into memory) while
    hashing it, refuse it unless it is the file declared, and validate it exactly as an upload
    through the API is. The raw object and the upload row go either way, so a refused file is
    not kept; a store that is down keeps them for another try."""
    key = upload_key(upload.id)
    try:
        store.complete_direct_upload(key, upload.store_upload_id, etags, upload.part_sha256)
        description = UploadDescription(upload.filename, upload.name, _options(upload))
        result = store_upload(
            session,
            tenant,
            storage,
            store.read(key, None).chunks,
            description,
            settings,
            upload.size_bytes,
            declared=(upload.size_bytes, upload.sha256),
        )
    except StorageUnavailable:
        session.rollback()  # the upload stays: completing it again may work once the store does
        raise
    except Exception:
        session.rollback()
        _forget(session, store, upload.id)
        raise
    _forget(session, store, upload.id)
    return result


def _forget(session: Session, store: ObjectStore, upload_id: str) -> None:
    upload = session.get(DatasetUpload, upload_id)
    if upload is not None:
        discard_upload(store, upload)
        session.delete(upload)
        session.commit()


def _check_request(body: UploadRequest, settings: Settings) -> None:
    if body.size_bytes > settings.max_direct_upload_bytes:
        raise PayloadTooLarge(
            f"{body.size_bytes} bytes is more than the limit of "
            f"{settings.max_direct_upload_bytes} bytes (TAAS_MAX_DIRECT_UPLOAD_BYTES)"
        )
    if len(body.part_sha256) != part_count(body.size_bytes):
        raise InvalidInput(
            ["body", "part_sha256"],
            f"{body.size_bytes} bytes make {part_count(body.size_bytes)} parts of "
            f"{PART_BYTES} bytes; {len(body.part_sha256)} checksums were given",
        )
    image_size(body.image_size)  # refused now, not after the whole file was sent
    require_memory_to_decode(body.size_bytes, now=False)


def _options(upload: DatasetUpload) -> IngestOptions:
    label_column = upload.options.get("label_column")
    size_text = upload.options.get("image_size")
    return IngestOptions(
        label_column=str(label_column) if label_column else None,
        image_size=image_size(str(size_text) if size_text else None),
    )
