"""Dataset logic: list built-ins and uploads, accept an upload, look one up, delete it.

Flushes, never commits; raises domain errors, never HTTPException.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taas.app.auth.models import Tenant
from taas.app.core.config import Settings
from taas.app.core.errors import Conflict, DomainError, InvalidInput, NotFound
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
from taas.app.scheduling.presence import live_workers
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
    return [describe_builtin(session, name, settings) for name in BUILTIN_DATASETS] + [
        describe_upload(dataset) for dataset in uploads
    ]


def describe_builtin(session: Session, name: str, settings: Settings) -> DatasetOut:
    info = dataset_info(JobSpec(dataset=name))
    availability = builtin_availability(session, name, settings)
    available, reason = availability.available, availability.reason
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


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str
    said_by_workers: bool  # False: no live worker has said; this is the API host's own look


def builtin_availability(
    session: Session, name: str, settings: Settings, queue: str | None = None
) -> Availability:
    """Whether jobs on the built-in ``name`` can run: as the live workers (of ``queue``) found
    their files, the one place that knows, since the files are on their disks. Where no worker
    has said, the API looks with the same lookup the trainer's loader uses, in the same data
    dir (a worker of ``taas serve`` shares it), without importing torch."""
    reports = _worker_reports(session, name, settings, queue)
    if not reports:
        ready, reason = dataset_files.available(
            name, settings.resolved_data_dir, allow_download=settings.allow_download
        )
        return Availability(ready, reason, said_by_workers=False)
    ready_reasons = [reason for ready, reason in reports if ready]
    if ready_reasons:
        where = (
            "every worker"
            if len(ready_reasons) == len(reports)
            else (f"{len(ready_reasons)} of {len(reports)} workers")
        )
        return Availability(True, f"on {where}: {ready_reasons[0]}", said_by_workers=True)
    return Availability(False, reports[0][1], said_by_workers=True)


def _worker_reports(
    session: Session, name: str, settings: Settings, queue: str | None
) -> list[tuple[bool, str]]:
    reports = []
    for worker in live_workers(session, settings.presence_seconds):
        said = (worker.datasets or {}).get(name)
        if said is None or (queue is not None and queue not in worker.queues):
            continue
        reports.append((bool(said.get("available")), str(said.get("reason", ""))))
    return reports


def require_builtin_available(session: Session, name: str, settings: Settings, queue: str) -> None:
    """Refuse (422) a job on a built-in that no live worker of its queue can load: it would
    fail a second later on the worker. Where no worker has said, the job waits for one."""
    if name not in BUILTIN_DATASETS:
        return
    availability = builtin_availability(session, name, settings, queue)
    if availability.said_by_workers and not availability.available:
        raise InvalidInput(
            ["body", "dataset"],
            f"dataset {name!r} is not on any worker of the {queue} queue: {availability.reason}",
        )


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
