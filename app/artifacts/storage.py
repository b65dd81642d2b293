"""Where artifact bytes live. Keys are made from server-side ids; user input never names a path.

Writes are atomic: bytes go to a temporary file while their SHA-256 is computed, the file is fsynced
and renamed into place only when the digest matches what the sender declared.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.errors import IntegrityFailure, PayloadTooLarge

JOB_ID_PATTERN = re.compile(r"^job_[0-9a-f]{24}$")


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str


class ArtifactStorage(Protocol):
    async def put_stream(
        self, job_id: str, chunks: AsyncIterator[bytes], expected_sha256: str, max_bytes: int
    ) -> StoredObject: ...

    def local_path(self, key: str) -> Path: ...

    def delete(self, key: str) -> None: ...

    def delete_job_files(self, job_id: str) -> None: ...


class LocalArtifactStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _job_dir(self, job_id: str) -> Path:
        if not JOB_ID_PATTERN.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    async def put_stream(
        self, job_id: str, chunks: AsyncIterator[bytes], expected_sha256: str, max_bytes: int
    ) -> StoredObject:
        job_dir = self._job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        temporary = job_dir / f".{name}.partial"
        try:
            size, digest = await _write_hashed(temporary, chunks, max_bytes)
            if digest != expected_sha256:
                raise IntegrityFailure(
                    f"sha256 mismatch: declared {expected_sha256}, received {digest} "
                    f"({size} bytes); the upload was discarded"
                )
            os.replace(temporary, job_dir / name)
            _fsync_dir(job_dir)
        finally:
            temporary.unlink(missing_ok=True)
        return StoredObject(key=f"{job_id}/{name}", size_bytes=size, sha256=digest)

    def local_path(self, key: str) -> Path:
        job_id, _, name = key.partition("/")
        if not re.fullmatch(r"[0-9a-f]{32}", name):
            raise ValueError(f"not a storage key: {key!r}")
        return self._job_dir(job_id) / name

    def delete(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    def delete_job_files(self, job_id: str) -> None:
        shutil.rmtree(self._job_dir(job_id), ignore_errors=True)


async def _write_hashed(
    path: Path, chunks: AsyncIterator[bytes], max_bytes: int
) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("wb") as file:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"artifact larger than the limit of {max_bytes} bytes")
            digest.update(chunk)
            file.write(chunk)
        file.flush()
        os.fsync(file.fileno())
    return size, digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry itself is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
