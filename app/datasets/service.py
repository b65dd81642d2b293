"""Dataset logic: list built-ins and uploads, accept an upload, look one up, delete it.

Flushes, never commits; raises domain errors, never HTTPException.
"""

from __future__ import annotations

import secrets
import threading
from functools import partial
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taas.app.auth.models import Tenant
from taas.app.core.config import Settings
from taas.app.core.errors import Conflict, DomainError, NotFound
from taas.app.datasets.decode_memory import require_memory_to_decode
from taas.app.datasets.ingest import (
    CanonicalDataset,
    IngestLimits,
    IngestOptions,
    InvalidDataset,
    ingest,
    write_canonical,
)
from taas.app.datasets.models import Dataset
from taas.app.datasets.schemas import DatasetOut
from taas.app.datasets.storage import DatasetStorage, StagedUpload
from taas.app.jobs.models import Job
from taas.app.spec import BUILTIN_DATASETS, DATASET_ID_PATTERN, DatasetInfo, JobSpec, dataset_info
from taas.worker.datasets import files as dataset_files

ACTIVE_JOB_STATUSES = ("queued", "running", "cancelling")


class UploadRefused(DomainError):
    """An upload that cannot become a dataset; the status is the ingest check's (413/415/422)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


# A conversion holds the decoded dataset in memory (up to TAAS_MAX_UNCOMPRESSED_BYTES): one at a
# time per API process, so that concurrent uploads wait instead of multiplying that peak.
_ONE_CONVERSION_AT_A_TIME = threading.Lock()


def new_dataset_id() -> str:
    return f"ds_{secrets.token_hex(12)}"


def ingest_limits(settings: Settings) -> IngestLimits:
    return IngestLimits(
        max_samples=settings.max_dataset_samples,
        min_train_samples=settings.min_train_samples,
        max_classes=settings.max_dataset_classes,
        max_values_per_sample=settings.max_values_per_sample,
        max_zip_entries=settings.max_zip_entries,
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
        max_compression_ratio=settings.max_compression_ratio,
        max_image_pixels=settings.max_image_pixels,
    )


# --- listing ---------------------------------------------------------------------------------


def list_datasets(session: Session, tenant: Tenant, settings: Settings) -> list[DatasetOut]:
    """The built-ins first (with whether this server can load each), then the tenant's uploads,
    newest first."""
    uploads = session.scalars(
        select(Dataset)
        .where(Dataset.tenant_id == tenant.id)
        .order_by(Dataset.created_at.desc(), Dataset.id.desc())
    )
    return [describe_builtin(name, settings) for name in BUILTIN_DATASETS] + [
        describe_upload(dataset) for dataset in uploads
    ]


def describe_builtin(name: str, settings: Settings) -> DatasetOut:
    info = dataset_info(JobSpec(dataset=name))
    available, reason = builtin_availability(name, settings.data_dir, settings.allow_download)
    return DatasetOut(
        id=name,
        name=name,
        kind="builtin",
        available=available,
        reason=reason,
        shape=list(info.shape),
        num_classes=info.num_classes,
        class_names=info.class_names,
        train_size=info.train_size,
        test_size=info.test_size,
        format=None,
        dtype="uint8",
        sha256=None,
    )


def builtin_availability(
    name: str, data_dir: Path | None, allow_download: bool
) -> tuple[bool, str]:
    """Asked of the file lookup the trainer's loader uses, so the answer is what a local worker
    will find; that lookup lives outside the trainer, so answering imports no torch."""
    return dataset_files.available(name, data_dir, allow_download=allow_download)


def describe_upload(dataset: Dataset) -> DatasetOut:
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        kind="uploaded",
        available=True,
        reason="uploaded; workers fetch it from the API",
        shape=list(dataset.shape),
        num_classes=len(dataset.class_names),
        class_names=list(dataset.class_names),
        train_size=dataset.train_size,
        test_size=dataset.test_size,
        format=dataset.source_format,
        dtype=dataset.dtype,
        sha256=dataset.sha256,
        size_bytes=dataset.size_bytes,
        created_at=dataset.created_at,
    )


# --- lookups -------------------------------------------------------------------------------------


def get_owned_dataset(session: Session, tenant: Tenant, dataset_id: str) -> Dataset:
    """The tenant's dataset; another tenant's is indistinguishable from a missing one."""
    dataset = session.get(Dataset, dataset_id) if DATASET_ID_PATTERN.match(dataset_id) else None
    if dataset is None or dataset.tenant_id != tenant.id:
        raise NotFound(f"dataset {dataset_id[:64]!r} not found")
    return dataset


def info_for_job(session: Session, tenant: Tenant, name: str) -> DatasetInfo | None:
    """What a job on the tenant's uploaded dataset ``name`` needs to be validated; None when it
    is not one (built-ins describe themselves; anything else is an unknown dataset)."""
    if not DATASET_ID_PATTERN.match(name):
        return None
    dataset = session.get(Dataset, name)
    if dataset is None or dataset.tenant_id != tenant.id:
        return None
    return DatasetInfo(
        name=dataset.id,
        shape=(dataset.shape[0], dataset.shape[1], dataset.shape[2]),
        num_classes=len(dataset.class_names),
        class_names=list(dataset.class_names),
        train_size=dataset.train_size,
        test_size=dataset.test_size,
        value_bytes=4 if dataset.dtype == "float32" else 1,
    )


# --- upload ----------------------------------------------------------------------------------


def create_from_upload(
    session: Session,
    tenant: Tenant,
    storage: DatasetStorage,
    upload: StagedUpload,
    *,
    filename: str,
    name: str,
    options: IngestOptions,
    limits: IngestLimits,
) -> tuple[Dataset, bool]:
    """The dataset made from a staged upload, and whether it is new: the same bytes uploaded
    again by the same tenant return the dataset made the first time."""
    existing = _same_upload(session, tenant, upload.sha256)
    if existing is not None:
        return existing, False
    dataset_id = new_dataset_id()
    with _ONE_CONVERSION_AT_A_TIME:
        require_memory_to_decode(upload.size_bytes)  # checked once the conversion before is done
        try:
            canonical = ingest(upload.path, filename, options, limits)
        except InvalidDataset as error:
            raise UploadRefused(error.status_code, error.message) from error
        stored = storage.save(dataset_id, partial(write_canonical, canonical))
        dataset = _dataset_row(dataset_id, tenant, name, upload, canonical)
        del canonical  # the decoded tensors go before the next conversion starts
    dataset.sha256, dataset.size_bytes = stored.sha256, stored.size_bytes
    try:
        with session.begin_nested():
            session.add(dataset)
    except IntegrityError:
        # The same bytes arrived twice at once: keep the first, drop this copy.
        storage.delete(dataset_id)
        existing = _same_upload(session, tenant, upload.sha256)
        if existing is None:
            raise
        return existing, False
    return dataset, True


def _same_upload(session: Session, tenant: Tenant, upload_sha256: str) -> Dataset | None:
    return session.scalar(
        select(Dataset).where(
            Dataset.tenant_id == tenant.id, Dataset.upload_sha256 == upload_sha256
        )
    )


def _dataset_row(
    dataset_id: str, tenant: Tenant, name: str, upload: StagedUpload, canonical: CanonicalDataset
) -> Dataset:
    test_size = 0 if canonical.test_y is None else len(canonical.test_y)
    return Dataset(
        id=dataset_id,
        tenant_id=tenant.id,
        name=name,
        source_format=canonical.source_format,
        upload_sha256=upload.sha256,
        upload_bytes=upload.size_bytes,
        shape=list(canonical.shape),
        dtype=str(canonical.train_x.dtype),
        class_names=list(canonical.class_names),
        train_size=len(canonical.train_y),
        test_size=test_size,
    )


# --- delete ----------------------------------------------------------------------------------


def delete_dataset(session: Session, dataset: Dataset) -> None:
    """Refused (409) while a queued or running job still needs the dataset."""
    waiting = session.scalars(
        select(Job.id)
        .where(Job.dataset == dataset.id, Job.status.in_(ACTIVE_JOB_STATUSES))
        .limit(5)
    ).all()
    if waiting:
        raise Conflict(
            f"dataset {dataset.id} is used by unfinished jobs ({', '.join(waiting)}); "
            "cancel them or wait for them to end"
        )
    session.delete(dataset)
    session.flush()
