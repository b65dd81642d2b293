"""The filesystem backend: the embedded default, and a deployment whose API hosts share a disk.

Objects are files: ``artifacts/...`` under the artifact folder and ``datasets/...`` and
``uploads/...`` under the dataset folder, so deployments made before object storage keep their
layout. Writes are atomic: a temporary file in the same folder, fsynced, renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from taas.app.core.errors import IntegrityFailure
from taas.app.storage.objects import (
    DirectUpload,
    ObjectInfo,
    ObjectMissing,
    ObjectRange,
    UnfinishedUpload,
    check_key,
)

CHUNK_BYTES = 1024 * 1024


class FileObjectStore:
    name = "filesystem"
    direct = False

    def __init__(self, artifact_dir: Path, dataset_dir: Path) -> None:
        self.roots = {
            "artifacts": artifact_dir,
            "datasets": dataset_dir,
            "uploads": dataset_dir / ".uploads",
        }

    def path(self, key: str) -> Path:
        namespace, _, rest = check_key(key).partition("/")
        return self.roots[namespace] / rest

    def staging_dir(self, key: str) -> Path:
        """A folder on the same filesystem as ``key``'s file, for its temporary files."""
        folder = self.path(key).parent
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def put_file(self, key: str, source: Path, sha256: str, *, consume: bool = False) -> None:
        """Copy (or, with ``consume``, move) ``source`` into place. A consumed source was hashed
        by its writer; a copy is hashed on the way and refused when it does not match."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if consume:
            _fsync_file(source)
            os.replace(source, final)
            fsync_dir(final.parent)
            return
        temporary = final.parent / f".{uuid.uuid4().hex}.partial"
        try:
            digest = _copy_hashed(source, temporary)
            if digest != sha256:
                raise IntegrityFailure(f"{key}: sha256 {digest}, expected {sha256}")
            os.replace(temporary, final)
            fsync_dir(final.parent)
        finally:
            temporary.unlink(missing_ok=True)

    def get_to_file(self, key: str, destination: Path) -> None:
        try:
            shutil.copyfile(self.path(key), destination)
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            status = self.path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, status.st_size, _modified(status.st_mtime))

    def local_file(self, key: str) -> Path | None:
        return self.path(key)

    def read(self, key: str, range_header: str | None) -> ObjectRange:
        # The API serves local files with FileResponse (ranges included); this is for tools.
        path = self.path(key)
        if not path.is_file():
            raise ObjectMissing(key)
        return ObjectRange(200, {"Content-Length": str(path.stat().st_size)}, _chunks(path))

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        folder = self.path(prefix.rstrip("/"))
        count = sum(1 for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        namespace = prefix.split("/", 1)[0]
        root = self.roots[namespace]
        if not root.is_dir():
            return
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if any(part.startswith(".") for part in relative.split("/")):
                continue  # temporary files being written, staging, other namespaces
            key = f"{namespace}/{relative}"
            if path.is_file() and key.startswith(prefix):
                status = path.stat()
                yield ObjectInfo(key, status.st_size, _modified(status.st_mtime))

    def unfinished_uploads(self, prefix: str) -> Iterator[UnfinishedUpload]:
        return iter(())  # a file is written whole or not at all

    def abort_upload(self, key: str, upload_id: str) -> None:
        return None

    def check(self) -> None:
        return None  # free space is watched by core.storage_space

    def presign_get(self, key: str, seconds: int, filename: str | None = None) -> str:
        raise NotImplementedError("the filesystem hands out no URLs")

    def start_direct_upload(self, key: str, part_sha256: list[str], seconds: int) -> DirectUpload:
        raise NotImplementedError("the filesystem hands out no URLs")

    def complete_direct_upload(
        self, key: str, upload_id: str | None, etags: list[str], part_sha256: list[str]
    ) -> None:
        raise NotImplementedError("the filesystem hands out no URLs")

    def verify(self, key: str, size_bytes: int, sha256: str, part_sha256: list[str]) -> None:
        path = self.path(key)
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                digest.update(chunk)
        if path.stat().st_size != size_bytes or digest.hexdigest() != sha256:
            raise IntegrityFailure(f"{key} does not hold the bytes declared")


def fsync_dir(directory: Path) -> None:
    # A rename is durable only once the directory entry itself is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as file:
        os.fsync(file.fileno())


def _copy_hashed(source: Path, destination: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as reader, destination.open("wb") as writer:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


def _modified(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
