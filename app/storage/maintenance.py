"""Keeping the store and the database in agreement: removing orphans, moving to a new store.

An orphan is an object no row names: a crash between writing an object and recording it, a
delete whose object delete failed (the store was down), an upload a vanished client never
completed. Only objects older than TAAS_STORAGE_ORPHAN_SECONDS count, so a write whose row is
about to be committed is never touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from taas.app.artifacts.models import Artifact
from taas.app.core.config import Settings
from taas.app.core.db import session_scope, utcnow
from taas.app.datasets.models import Dataset, DatasetUpload
from taas.app.storage.objects import (
    NAMESPACES,
    ObjectStore,
    artifact_key,
    dataset_key,
    upload_key,
)

HASH_CHUNK_BYTES = 1024 * 1024


@dataclass
class Collected:
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    aborted: list[str] = field(default_factory=list)  # unfinished multipart uploads
    expired_uploads: list[str] = field(default_factory=list)  # presigned dataset uploads

    def describe(self) -> str:
        return (
            f"{len(self.deleted)} orphaned objects ({self.deleted_bytes} bytes), "
            f"{len(self.aborted)} unfinished uploads, "
            f"{len(self.expired_uploads)} expired dataset uploads"
        )


def collect_garbage(store: ObjectStore, settings: Settings, *, dry_run: bool = False) -> Collected:
    """Delete what no row names and is older than the orphan age; with ``dry_run``, only say
    what would go."""
    collected = Collected()
    now = utcnow()
    _expire_dataset_uploads(store, now, collected, dry_run)
    known = known_keys()
    cutoff = now - timedelta(seconds=settings.storage_orphan_seconds)
    for namespace in NAMESPACES:
        for info in store.list_objects(f"{namespace}/"):
            if info.key not in known and info.modified < cutoff:
                collected.deleted.append(info.key)
                collected.deleted_bytes += info.size_bytes
                if not dry_run:
                    store.delete(info.key)
        for upload in store.unfinished_uploads(f"{namespace}/"):
            if upload.key not in known and upload.started < cutoff:
                collected.aborted.append(upload.key)
                if not dry_run:
                    store.abort_upload(upload.key, upload.upload_id)
    return collected


def known_keys() -> set[str]:
    """Every key a row names: artifacts, datasets and unexpired dataset uploads."""
    keys: set[str] = set()
    with session_scope() as session:
        for storage_key in session.scalars(select(Artifact.storage_key)):
            keys.add(_key_or_blank(artifact_key, storage_key))
        for dataset_id in session.scalars(select(Dataset.id)):
            keys.add(_key_or_blank(dataset_key, dataset_id))
        for upload_id in session.scalars(select(DatasetUpload.id)):
            keys.add(_key_or_blank(upload_key, upload_id))
    return keys


def _key_or_blank(make: Callable[[str], str], name: str) -> str:
    try:
        return make(name)
    except ValueError:  # a row from before keys were checked: it names no object we list
        return ""


def _expire_dataset_uploads(
    store: ObjectStore, now: datetime, collected: Collected, dry_run: bool
) -> None:
    with session_scope() as session:
        expired = session.scalars(select(DatasetUpload).where(DatasetUpload.expires_at < now))
        for upload in expired.all():
            collected.expired_uploads.append(upload.id)
            if dry_run:
                continue
            key = upload_key(upload.id)
            if upload.store_upload_id is not None:
                store.abort_upload(key, upload.store_upload_id)
            store.delete(key)
            session.delete(upload)
            session.commit()


@dataclass(frozen=True)
class Stored:
    """An object a row names, with what the row says about it."""

    key: str
    size_bytes: int
    sha256: str


@dataclass
class Migrated:
    moved: list[str] = field(default_factory=list)
    moved_bytes: int = 0
    already_there: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # rows whose file is gone from the source
    corrupt: list[str] = field(default_factory=list)  # files whose sha256 differs from the row

    def describe(self) -> str:
        return (
            f"moved {len(self.moved)} objects ({self.moved_bytes} bytes); "
            f"{len(self.already_there)} already there; {len(self.missing)} missing from the "
            f"source; {len(self.corrupt)} whose bytes do not match their sha256 (not moved)"
        )


def stored_objects() -> list[Stored]:
    with session_scope() as session:
        artifacts = session.execute(
            select(Artifact.storage_key, Artifact.size_bytes, Artifact.sha256)
        ).all()
        datasets = session.execute(select(Dataset.id, Dataset.size_bytes, Dataset.sha256)).all()
    return [Stored(artifact_key(k), size, sha) for k, size, sha in artifacts] + [
        Stored(dataset_key(d), size, sha) for d, size, sha in datasets
    ]


def migrate_objects(
    source: ObjectStore,
    destination: ObjectStore,
    *,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
) -> Migrated:
    """Copy every object a row names from ``source`` (this host's files) to ``destination``,
    each checked against its row's sha256 before it is sent and by the store as it arrives.
    An object the destination already holds with the same size and sha256 is skipped, so an
    interrupted run goes on where it stopped, and a second run moves nothing."""
    migrated = Migrated()
    for item in stored_objects():
        there = destination.stat(item.key)
        if (
            there is not None
            and there.size_bytes == item.size_bytes
            and there.sha256 == item.sha256
        ):
            migrated.already_there.append(item.key)
            continue
        local = source.local_file(item.key)
        if local is None or not local.is_file():
            migrated.missing.append(item.key)
            say(f"missing from the source: {item.key}")
            continue
        if _sha256_of(local) != item.sha256:
            migrated.corrupt.append(item.key)
            say(f"not moved, its bytes do not match its sha256: {item.key}")
            continue
        if not dry_run:
            destination.put_file(item.key, local, item.sha256)
        migrated.moved.append(item.key)
        migrated.moved_bytes += item.size_bytes
        say(f"{'would move' if dry_run else 'moved'} {item.key} ({item.size_bytes} bytes)")
    return migrated


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
