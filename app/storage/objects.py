"""The object store's interface, its keys and its errors.

Keys are made here from server-side ids only; nothing a user sends becomes part of a key. Every
key starts with a namespace: ``artifacts/<job id>/<32 hex>`` (model files, checkpoints, exports),
``datasets/<dataset id>.safetensors`` (canonical uploaded datasets) and ``uploads/<upload id>``
(raw files a user put straight into the store, waiting to be validated).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from taas.app.core.errors import DomainError, NotFound

NAMESPACES = ("artifacts", "datasets", "uploads")
# Files sent straight to the store go in parts of this size (S3 allows 5 MiB to 5 GiB per
# part); a file up to one part goes in one PUT. Workers and the SDK split their files the same
# way, so the part checksums they declare match the parts they send.
PART_BYTES = 64 * 1024 * 1024
# 64 GiB in parts, far above the size limits; small enough that a request listing every part's
# checksum and ETag stays under the API's JSON body limit (TAAS_MAX_JSON_BYTES, 1 MB).
MAX_PARTS = 1000
MAX_ETAG_CHARS = 100
_KEY = re.compile(r"^(artifacts|datasets|uploads)(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}){1,2}$")


class StorageUnavailable(DomainError):
    """503: the object store did not answer, or asked us to slow down; retry after a while."""

    status_code = 503
    retry_after_seconds = 10


class ObjectMissing(NotFound):
    """The key names no object: it was never written, or deleted behind taas's back (a 404
    wherever it is not handled)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} is missing from storage")
        self.key = key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size_bytes: int
    modified: datetime
    sha256: str | None = None  # when the store keeps it (written by put_file)


@dataclass(frozen=True)
class UnfinishedUpload:
    key: str
    upload_id: str
    started: datetime


@dataclass(frozen=True)
class PresignedPart:
    number: int
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class DirectUpload:
    """Where a client PUTs a file straight into the store: one URL per part. ``upload_id`` is
    the store's multipart upload, None for a file sent in one PUT."""

    key: str
    upload_id: str | None
    parts: list[PresignedPart]


@dataclass(frozen=True)
class ObjectRange:
    """A proxied read: status (200 or 206), the headers to pass on, and the bytes."""

    status_code: int
    headers: dict[str, str]
    chunks: Iterator[bytes]


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


def artifact_key(storage_key: str) -> str:
    """The object of an artifact row (whose storage_key is ``<job id>/<32 hex>``)."""
    return check_key(f"artifacts/{storage_key}")


def job_prefix(job_id: str) -> str:
    return check_key(f"artifacts/{job_id}") + "/"


def dataset_key(dataset_id: str) -> str:
    return check_key(f"datasets/{dataset_id}.safetensors")


def upload_key(upload_id: str) -> str:
    return check_key(f"uploads/{upload_id}")


def part_count(size_bytes: int) -> int:
    return max(1, -(-size_bytes // PART_BYTES))


class ObjectStore(Protocol):
    """Bytes by key. Blocking calls: async callers run them in a thread."""

    name: str  # "filesystem" or "s3://bucket/prefix", for messages
    direct: bool  # clients can be handed presigned URLs

    def put_file(self, key: str, source: Path, sha256: str, *, consume: bool = False) -> None:
        """Store the file's bytes under ``key``, atomically, checked against ``sha256``; with
        ``consume`` the source file (in staging_dir) is moved or removed."""

    def staging_dir(self, key: str) -> Path:
        """A local folder for the temporary file of ``key`` (the same filesystem where the
        backend is one, so that a consumed file is renamed, not copied)."""

    def get_to_file(self, key: str, destination: Path) -> None:
        """Write the object's bytes to ``destination``; ObjectMissing when there is none."""

    def stat(self, key: str) -> ObjectInfo | None: ...

    def local_file(self, key: str) -> Path | None:
        """The object as a file on this host (filesystem backend), else None."""

    def read(self, key: str, range_header: str | None) -> ObjectRange:
        """Stream the object (or the byte range asked for); ObjectMissing when there is none."""

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` and abort its unfinished uploads; returns the
        number of objects deleted."""

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def unfinished_uploads(self, prefix: str) -> Iterator[UnfinishedUpload]: ...

    def abort_upload(self, key: str, upload_id: str) -> None: ...

    def check(self) -> None:
        """Raise StorageUnavailable when the store does not answer."""

    def presign_get(self, key: str, seconds: int, filename: str | None = None) -> str: ...

    def start_direct_upload(
        self, key: str, part_sha256: list[str], seconds: int
    ) -> DirectUpload: ...

    def complete_direct_upload(
        self, key: str, upload_id: str | None, etags: list[str], part_sha256: list[str]
    ) -> None: ...

    def verify(self, key: str, size_bytes: int, sha256: str, part_sha256: list[str]) -> None:
        """Raise IntegrityFailure unless the object has this size and these bytes."""
