"""The worker's cache of uploaded datasets: each fetched once from the API, kept by sha256.

Jobs on the same dataset share one file. Each digest has a lock file: a download holds it
exclusively, so a second worker on the same machine waits for the first download instead of
starting its own; a job reading the file holds it shared, so eviction never removes a file in use.

The cache is bounded: after a download, the least recently used files that no job holds are
deleted until the cache fits ``max_bytes`` (a dataset larger than the bound is still kept while
it is the latest one).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from taas.worker.reporter import DatasetRef, sha256_of
from taas.worker.trainer.data import DatasetUnavailable

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
SUFFIX = ".safetensors"
logger = logging.getLogger(__name__)


@contextmanager
def cached_dataset(
    ref: DatasetRef,
    cache_dir: Path,
    download: Callable[[Path], None],
    log: Callable[[str], None],
    *,
    max_bytes: int | None = None,
) -> Iterator[Path]:
    """The local path of ``ref``'s canonical file while the ``with`` block reads it, downloading
    it with ``download`` on a miss and verifying its sha256 before anyone may use it."""
    if not SHA256_PATTERN.match(ref.sha256):
        raise DatasetUnavailable(f"dataset {ref.id} has a malformed sha256 {ref.sha256[:80]!r}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"{ref.sha256}{SUFFIX}"
    with _lock_file(cache_dir, ref.sha256) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_file():
            os.utime(final)  # the modification time is the last use, for eviction
            log(f"dataset {ref.id} from this worker's cache")
        else:
            _download_verified(ref, final, download)
            log(f"dataset {ref.id} downloaded ({ref.size_bytes} bytes, sha256 verified)")
        # Readers share the lock: eviction (exclusive, non-blocking) passes over this file.
        fcntl.flock(lock, fcntl.LOCK_SH)
        if max_bytes is not None:
            evict_least_recently_used(cache_dir, max_bytes, keep=final)
        yield final


def evict_least_recently_used(cache_dir: Path, max_bytes: int, *, keep: Path) -> list[Path]:
    """Delete the oldest-used cached datasets no job holds until the cache fits ``max_bytes``;
    returns what was deleted."""
    files = _cached_files(cache_dir)  # oldest use first
    total = sum(size for _, size in files)
    deleted = []
    for path, size in files:
        if total <= max_bytes:
            break
        if path != keep and _delete_if_unused(cache_dir, path):
            total -= size
            deleted.append(path)
    if total > max_bytes:
        logger.warning(
            "dataset cache %s holds %d bytes, over its bound of %d: the rest is in use",
            cache_dir,
            total,
            max_bytes,
        )
    return deleted


def _cached_files(cache_dir: Path) -> list[tuple[Path, int]]:
    """Each cached dataset and its size, least recently used first."""
    found = []
    for path in cache_dir.glob(f"*{SUFFIX}"):
        if not SHA256_PATTERN.match(path.name.removesuffix(SUFFIX)):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # another worker on this machine evicted it just now
        found.append((stat.st_mtime, path, stat.st_size))
    return [(path, size) for _, path, size in sorted(found)]


def _delete_if_unused(cache_dir: Path, path: Path) -> bool:
    digest = path.name.removesuffix(SUFFIX)
    with _lock_file(cache_dir, digest) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a job is reading it, or a worker is downloading it
        path.unlink(missing_ok=True)
        logger.info("evicted dataset %s from the cache", digest)
        return True


def _download_verified(ref: DatasetRef, final: Path, download: Callable[[Path], None]) -> None:
    temporary = final.with_name(f".{ref.sha256}.{uuid.uuid4().hex}.partial")
    try:
        download(temporary)
        digest = sha256_of(temporary)
        if digest != ref.sha256:
            raise DatasetUnavailable(
                f"dataset {ref.id} arrived corrupted (sha256 {digest}, expected {ref.sha256}); "
                "it was discarded"
            )
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def _lock_file(cache_dir: Path, digest: str) -> Iterator[IO[str]]:
    """The digest's lock file, open; any flock on it is released when it closes."""
    with (cache_dir / f"{digest}.lock").open("a") as handle:
        yield handle
