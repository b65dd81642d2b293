"""Artifact files in the object store. Keys are made from server-side ids; user input never
names a key.

An upload that comes through the API is written to a local temporary file while its SHA-256 is
computed, then handed to the store only when the digest matches what the sender declared. The
disk work (write, hash, fsync, hand-over) runs in worker threads, so a slow disk or store delays
only that upload, never the event loop that serves every other request.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from anyio import to_thread

from taas.app.core.errors import IntegrityFailure, PayloadTooLarge
from taas.app.spec import JOB_ID_PATTERN
from taas.app.storage.objects import ObjectStore, StorageUnavailable, artifact_key, job_prefix

logger = logging.getLogger(__name__)
# Bytes handed to the disk thread at once: few thread hops per upload, 1 MiB held per upload.
WRITE_BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str  # the artifact row's storage_key: "<job id>/<32 hex>"
    size_bytes: int
    sha256: str


def new_storage_key(job_id: str) -> str:
    if not JOB_ID_PATTERN.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return f"{job_id}/{uuid.uuid4().hex}"


class ArtifactStorage:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def put_stream(
        self, job_id: str, chunks: AsyncIterator[bytes], expected_sha256: str, max_bytes: int
    ) -> StoredObject:
        storage_key = new_storage_key(job_id)
        key = artifact_key(storage_key)
        staging = await to_thread.run_sync(self.store.staging_dir, key)
        temporary = staging / f".{storage_key.rsplit('/', 1)[1]}.partial"
        try:
            size, digest = await _write_hashed(temporary, chunks, max_bytes)
            if digest != expected_sha256:
                raise IntegrityFailure(
                    f"sha256 mismatch: declared {expected_sha256}, received {digest} "
                    f"({size} bytes); the upload was discarded"
                )
            await to_thread.run_sync(
                partial(self.store.put_file, key, temporary, digest, consume=True)
            )
        finally:
            temporary.unlink(missing_ok=True)  # also when the sender vanished mid-body
        return StoredObject(key=storage_key, size_bytes=size, sha256=digest)

    def delete(self, storage_key: str) -> None:
        """Called once the row is gone: a store that is down leaves an orphan for the garbage
        collection (`taas storage gc`) instead of failing what was already committed."""
        with orphans_left_to_gc(storage_key):
            self.store.delete(artifact_key(storage_key))

    def delete_job_files(self, job_id: str) -> None:
        """Every object of the job, and its unfinished uploads (after its rows went)."""
        with orphans_left_to_gc(f"the files of {job_id}"):
            self.store.delete_prefix(job_prefix(job_id))


@contextmanager
def orphans_left_to_gc(what: str) -> Iterator[None]:
    try:
        yield
    except StorageUnavailable as error:
        logger.warning("%s stay in storage for now, for the gc to remove: %s", what, error.message)


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
        await to_thread.run_sync(file.flush)
    return size, digest.hexdigest()


def _write_batch(file: BinaryIO, digest: hashlib._Hash, batch: bytearray) -> None:
    digest.update(batch)
    file.write(batch)
