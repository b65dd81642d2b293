"""Where artifact bytes live. Keys are made from server-side ids; user input never names a path.

Writes are atomic: bytes go to a temporary file while their SHA-256 is computed, the file is fsynced
and renamed into place only when the digest matches what the sender declared. The disk work (write,
hash, fsync, rename) runs in worker threads, so a slow disk delays only that upload, never the event
loop that serves every other request.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, Protocol

from anyio import to_thread

from taas.app.core.errors import IntegrityFailure, PayloadTooLarge
from taas.app.spec import JOB_ID_PATTERN

# Bytes handed to the disk thread at once: few thread hops per upload, 1 MiB held per upload.
WRITE_BATCH_BYTES = 1024 * 1024


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
        await to_thread.run_sync(partial(job_dir.mkdir, parents=True, exist_ok=True))
        name = uuid.uuid4().hex
        temporary = job_dir / f".{name}.partial"
        try:
            size, digest = await _write_hashed(temporary, chunks, max_bytes)
            if digest != expected_sha256:
                raise IntegrityFailure(
                    f"sha256 mismatch: declared {expected_sha256}, received {digest} "
                    f"({size} bytes); the upload was discarded"
                )
            await to_thread.run_sync(_move_into_place, temporary, job_dir / name)
        finally:
            temporary.unlink(missing_ok=True)  # also when the sender vanished mid-body
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
    """Write and hash the body as it arrives, a batch at a time in a worker thread (hashlib and
    file writes release the GIL); at most one batch is held in memory."""
    digest, size, batch = hashlib.sha256(), 0, bytearray()
    with path.open("wb") as file:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"artifact larger than the limit of {max_bytes} bytes")
            batch += chunk
            if len(batch) >= WRITE_BATCH_BYTES:
                await to_thread.run_sync(_write_batch, file, digest, batch)
                batch = bytearray()
        await to_thread.run_sync(_write_batch, file, digest, batch)
        await to_thread.run_sync(_flush_to_disk, file)
    return size, digest.hexdigest()


def _write_batch(file: BinaryIO, digest: hashlib._Hash, batch: bytearray) -> None:
    digest.update(batch)
    file.write(batch)


def _flush_to_disk(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())


def _move_into_place(temporary: Path, final: Path) -> None:
    os.replace(temporary, final)
    fsync_dir(final.parent)


def fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry itself is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
