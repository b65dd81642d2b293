"""Where uploaded datasets live: one canonical object per dataset id, in the object store.

Objects are named by server-side ids only (``ds_<24 hex>``); nothing the user sends becomes a
key. An upload is staged in a local file while it is hashed and validated; the canonical file
is written next to where the store keeps it, then handed over whole.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from taas.app.artifacts.storage import orphans_left_to_gc
from taas.app.core.errors import PayloadTooLarge
from taas.app.core.storage_space import raise_if_storage_full
from taas.app.spec import DATASET_ID_PATTERN
from taas.app.storage.objects import ObjectStore, dataset_key

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StagedUpload:
    path: Path
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class StoredDataset:
    size_bytes: int
    sha256: str


class DatasetStorage:
    def __init__(self, store: ObjectStore, staging: Path) -> None:
        self.store = store
        self.staging = staging

    def key(self, dataset_id: str) -> str:
        if not DATASET_ID_PATTERN.match(dataset_id):
            raise ValueError(f"not a dataset id: {dataset_id!r}")
        return dataset_key(dataset_id)

    @contextmanager
    def staged(self, chunks: Iterable[bytes], max_bytes: int) -> Iterator[StagedUpload]:
        """Copy an upload (a request body, or an object read from the store) into a private
        file while hashing it; the file is gone afterwards, whatever happens."""
        self.staging.mkdir(parents=True, exist_ok=True)
        path = self.staging / uuid.uuid4().hex
        try:
            size, digest = _copy_hashed(chunks, path, max_bytes)
            yield StagedUpload(path=path, size_bytes=size, sha256=digest)
        finally:
            path.unlink(missing_ok=True)

    def save(self, dataset_id: str, write: Callable[[Path], None]) -> StoredDataset:
        """Let ``write`` fill a temporary file, then hand it to the store whole."""
        key = self.key(dataset_id)
        temporary = self.store.staging_dir(key) / f".{dataset_id}.partial"
        try:
            _write_or_report_full_disk(write, temporary)
            size, digest = _fsync_and_hash(temporary)
            self.store.put_file(key, temporary, digest, consume=True)
        finally:
            temporary.unlink(missing_ok=True)
        return StoredDataset(size_bytes=size, sha256=digest)

    def delete(self, dataset_id: str) -> None:
        """Called once the row is gone (a store that is down leaves the object to the gc)."""
        with orphans_left_to_gc(dataset_id):
            self.store.delete(self.key(dataset_id))


def _write_or_report_full_disk(write: Callable[[Path], None], path: Path) -> None:
    # The canonical file is written by safetensors, whose full-disk error is no OSError.
    try:
        write(path)
    except Exception as error:
        raise_if_storage_full(error)
        raise


def file_chunks(file: BinaryIO) -> Iterator[bytes]:
    while chunk := file.read(CHUNK_BYTES):
        yield chunk


def _copy_hashed(chunks: Iterable[bytes], path: Path, max_bytes: int) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("wb") as file:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"upload larger than the limit of {max_bytes} bytes")
            digest.update(chunk)
            file.write(chunk)
    return size, digest.hexdigest()


def _fsync_and_hash(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb+") as file:
        while chunk := file.read(CHUNK_BYTES):
            size += len(chunk)
            digest.update(chunk)
        os.fsync(file.fileno())
    return size, digest.hexdigest()
