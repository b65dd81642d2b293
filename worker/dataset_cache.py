"""The worker's cache of uploaded datasets: each fetched once from the API, kept by sha256.

Jobs on the same dataset share one file. A lock per digest makes a second worker on the same
machine wait for the first download instead of starting its own.
"""

from __future__ import annotations

import fcntl
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.reporter import DatasetRef, sha256_of
from worker.trainer.data import DatasetUnavailable

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def cached_dataset(
    ref: DatasetRef,
    cache_dir: Path,
    download: Callable[[Path], None],
    log: Callable[[str], None],
) -> Path:
    """The local path of ``ref``'s canonical file, downloading it with ``download`` on a miss
    and verifying its sha256 before anyone may use it."""
    if not SHA256_PATTERN.match(ref.sha256):
        raise DatasetUnavailable(f"dataset {ref.id} has a malformed sha256 {ref.sha256[:80]!r}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"{ref.sha256}.safetensors"
    with _locked(cache_dir / f"{ref.sha256}.lock"):
        if final.is_file():
            log(f"dataset {ref.id} from this worker's cache")
            return final
        _download_verified(ref, final, download)
    log(f"dataset {ref.id} downloaded ({ref.size_bytes} bytes, sha256 verified)")
    return final


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
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield
