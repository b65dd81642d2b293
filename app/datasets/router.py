"""Public dataset routes (HTTP only: parsing, status codes; logic lives in service.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from taas.app.auth.dependencies import CurrentTenant, SettingsDep
from taas.app.auth.models import Tenant
from taas.app.core.config import Settings
from taas.app.core.db import SessionDep
from taas.app.core.errors import Conflict, IntegrityFailure, InvalidInput, UnsupportedMediaType
from taas.app.core.openapi import error_responses
from taas.app.core.storage_space import require_room_for_new_work
from taas.app.datasets import service
from taas.app.datasets.dependencies import DatasetStorageDep
from taas.app.datasets.ingest import IngestOptions
from taas.app.datasets.models import Dataset
from taas.app.datasets.schemas import DatasetList, DatasetOut
from taas.app.datasets.storage import DatasetStorage, file_chunks
from taas.app.spec import BUILTIN_DATASETS

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
NO_SUCH_DATASET = {404: "no such dataset for this tenant"}
NOT_FOUND = error_responses(NO_SUCH_DATASET)
DatasetId = Annotated[str, Path(max_length=200, description="`ds_...`, or a built-in's name")]
FORM_FIELDS = ("file", "name", "label_column", "image_size")
IMAGE_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX,]\s*(\d{1,5})\s*$")

UPLOAD_FORM = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "additionalProperties": False,  # parse_upload_form refuses other fields
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": ".npz (x, y, optional x_test, y_test), CSV with a "
                        "header and a label column, or .zip of one folder of images per class",
                    },
                    "name": {"type": "string", "maxLength": 100},
                    "label_column": {"type": "string", "description": "CSV; default 'label'"},
                    "image_size": {
                        "type": "string",
                        "description": "zip: HxW to resize to; default the most common size",
                    },
                },
            }
        }
    },
}


@dataclass(frozen=True)
class UploadForm:
    file: UploadFile
    filename: str
    name: str
    options: IngestOptions


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    openapi_extra={"requestBody": UPLOAD_FORM},
    responses={
        200: {"description": "the same bytes were uploaded before: that dataset"},
        **error_responses(
            {
                413: "the upload (or what it unpacks to) is too large",
                415: "not multipart/form-data, or a file that is none of .npz, CSV or .zip "
                "(an image on its own, say: zip a folder of them per class)",
                422: "the file is not a valid dataset, or a field is wrong; the message says why",
                503: "object storage is down, or this API host has too little memory free to "
                "validate the upload now (Retry-After)",
                507: "a storage location is below TAAS_MIN_FREE_BYTES; the detail says",
            }
        ),
    },
)
async def upload_dataset(
    request: Request,
    response: Response,
    tenant: CurrentTenant,
    session: SessionDep,
    settings: SettingsDep,
    storage: DatasetStorageDep,
) -> DatasetOut:
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Content-Type {content_type[:100]!r} is not supported: send multipart/form-data "
            "with a 'file' field (and optionally 'name')"
        )
    require_room_for_new_work(settings, "dataset upload")  # before a byte of the body is read
    async with request.form(max_files=1, max_fields=len(FORM_FIELDS)) as form:
        upload = parse_upload_form(form)
        # Hashing, unpacking and validating take seconds on a large file: off the event loop.
        dataset, created = await run_in_threadpool(
            store_upload,
            session,
            tenant,
            storage,
            file_chunks(upload.file.file),
            UploadDescription(upload.filename, upload.name, upload.options),
            settings,
            settings.max_upload_bytes,
        )
    if not created:
        response.status_code = status.HTTP_200_OK
    return service.describe_upload(dataset)


@dataclass(frozen=True)
class UploadDescription:
    filename: str
    name: str
    options: IngestOptions


def store_upload(
    session: Session,
    tenant: Tenant,
    storage: DatasetStorage,
    chunks: Iterable[bytes],
    upload: UploadDescription,
    settings: Settings,
    max_bytes: int,
    *,
    declared: tuple[int, str] | None = None,
) -> tuple[Dataset, bool]:
    """Stage, validate and store an uploaded file as a dataset (or find the one made from the
    same bytes before); committed. With ``declared`` (size, sha256), bytes that differ are
    refused before they are decoded."""
    with storage.staged(chunks, max_bytes) as staged:
        if declared is not None and declared != (staged.size_bytes, staged.sha256):
            raise IntegrityFailure(
                f"the file in storage ({staged.size_bytes} bytes, sha256 {staged.sha256}) is "
                f"not the one declared ({declared[0]} bytes, sha256 {declared[1]})"
            )
        dataset, created = service.create_from_upload(
            session,
            tenant,
            storage,
            staged,
            filename=upload.filename,
            name=upload.name,
            options=upload.options,
            limits=service.ingest_limits(settings),
        )
        try:
            session.commit()
        except Exception:
            if created:
                storage.delete(dataset.id)  # no row, so no file either
            raise
    return dataset, created


def parse_upload_form(form: FormData) -> UploadForm:
    """The upload's fields, each checked; unknown fields are refused so a typo is not ignored."""
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        raise InvalidInput(
            ["body", unknown[0]], f"unknown field; expected {', '.join(FORM_FIELDS)}"
        )
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidInput(["body", "file"], "field 'file' is required and must be a file")
    filename = (file.filename or "upload")[-200:]
    name = _text_field(form, "name") or default_name(filename)
    if len(name) > 100:
        raise InvalidInput(["body", "name"], f"name has {len(name)} characters, at most 100")
    return UploadForm(
        file=file,
        filename=filename,
        name=name,
        options=IngestOptions(
            label_column=_text_field(form, "label_column"),
            image_size=image_size(_text_field(form, "image_size")),
        ),
    )


def _text_field(form: FormData, field: str) -> str | None:
    value = form.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(["body", field], f"field {field!r} must be text, not a file")
    value = value.strip()
    if len(value) > 200:
        raise InvalidInput(["body", field], f"{field} has {len(value)} characters, at most 200")
    return value or None


def default_name(filename: str) -> str:
    stem = filename.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return stem.strip()[:100] or "dataset"


def image_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = IMAGE_SIZE.match(text)
    if match is None:
        raise InvalidInput(["body", "image_size"], f"image_size={text!r}: expected HxW, e.g. 28x28")
    height, width = int(match.group(1)), int(match.group(2))
    if not (1 <= height <= 4096 and 1 <= width <= 4096):
        message = f"image_size={text!r}: height and width must be 1-4096"
        raise InvalidInput(["body", "image_size"], message)
    return height, width


@router.get("", response_model=DatasetList)
def list_datasets(session: SessionDep, tenant: CurrentTenant, settings: SettingsDep) -> DatasetList:
    return DatasetList(items=service.list_datasets(session, tenant, settings))


@router.get("/{dataset_id}", response_model=DatasetOut, responses=NOT_FOUND)
def get_dataset(
    dataset_id: DatasetId, session: SessionDep, tenant: CurrentTenant, settings: SettingsDep
) -> DatasetOut:
    if dataset_id in BUILTIN_DATASETS:
        return service.describe_builtin(session, dataset_id, settings)
    return service.describe_upload(service.get_owned_dataset(session, tenant, dataset_id))


def valid_owned_upload(
    dataset_id: DatasetId, session: SessionDep, tenant: CurrentTenant
) -> Dataset:
    if dataset_id in BUILTIN_DATASETS:
        raise Conflict(f"{dataset_id} is a built-in dataset; only uploads can be deleted")
    return service.get_owned_dataset(session, tenant, dataset_id)


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses({**NO_SUCH_DATASET, 409: "built in, or unfinished jobs use it"}),
)
def delete_dataset(
    dataset: Annotated[Dataset, Depends(valid_owned_upload)],
    session: SessionDep,
    storage: DatasetStorageDep,
) -> Response:
    service.delete_dataset(session, dataset)
    session.commit()
    storage.delete(dataset.id)  # after the commit: a failed commit keeps both row and file
    return Response(status_code=status.HTTP_204_NO_CONTENT)
