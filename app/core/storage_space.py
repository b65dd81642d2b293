"""Free disk space: measured where the API keeps things, and recognised when a write ran out of it.

The API refuses new work (jobs, uploads, claims) while a storage location has less than
``TAAS_MIN_FREE_BYTES`` free, so that the space left goes to finishing the work already taken;
``/readyz`` says which location is low. A write that still hits a full disk (ENOSPC, a quota,
SQLite's "database or disk is full", PostgreSQL's disk_full) answers 507 instead of a 500.
"""

from __future__ import annotations

import errno
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from taas.app.core.config import Settings
from taas.app.core.errors import InsufficientStorage

STORAGE_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
POSTGRES_DISK_FULL = "53100"  # SQLSTATE disk_full
# How Rust's io::Error shows ENOSPC and EDQUOT (safetensors writes files from Rust).
RUST_STORAGE_FULL = re.compile(rf"\(os error ({errno.ENOSPC}|{errno.EDQUOT})\)")


@dataclass(frozen=True)
class StorageLocation:
    name: str  # what is kept there: database, artifacts, datasets, worker scratch
    free_bytes: int
    min_free_bytes: int

    @property
    def low(self) -> bool:
        return self.free_bytes < self.min_free_bytes

    def describe(self) -> str:
        return (
            f"{self.name} storage has {_mib(self.free_bytes)} free, below the "
            f"{_mib(self.min_free_bytes)} that TAAS_MIN_FREE_BYTES asks for"
        )


def _in_words(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def free_bytes(path: Path) -> int:
    """Free bytes (for this user) on the filesystem that holds ``path``, or would hold it once
    created: the nearest existing folder above it is measured."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def api_locations(settings: Settings) -> dict[str, Path]:
    """The folders the API writes to: the SQLite database's (a server database is measured by
    its own server), the artifact store and the uploaded datasets."""
    locations = {}
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        locations["database"] = Path(url.database).parent
    locations["artifacts"] = settings.resolved_artifact_dir
    locations["datasets"] = settings.resolved_dataset_dir
    return locations


def measure(locations: dict[str, Path], min_free_bytes: int) -> list[StorageLocation]:
    return [
        StorageLocation(name, free_bytes(path), min_free_bytes) for name, path in locations.items()
    ]


def low_locations(settings: Settings) -> list[StorageLocation]:
    return [
        location
        for location in measure(api_locations(settings), settings.min_free_bytes)
        if location.low
    ]


def require_room_for_new_work(settings: Settings, what: str) -> None:
    """Raise InsufficientStorage (507) naming each low location while any is below the
    threshold: space left is kept for the jobs already running."""
    low = low_locations(settings)
    if low:
        reasons = "; ".join(_describe_together(low))
        raise InsufficientStorage(f"{what} refused: {reasons}. Free some space and retry")
    # Object storage that does not answer: 503 with Retry-After, nothing is accepted that
    # could not be kept.
    from taas.app.storage.factory import store_for
    from taas.app.storage.health import require_storage

    require_storage(store_for(settings), what)


def _describe_together(low: list[StorageLocation]) -> list[str]:
    """One reason per amount of free space: locations on one filesystem (the usual case) are low
    together, and the same numbers three times over would only be harder to read."""
    by_space: dict[tuple[int, int], list[str]] = {}
    for location in low:
        by_space.setdefault((location.free_bytes, location.min_free_bytes), []).append(
            location.name
        )
    return [
        StorageLocation(_in_words(names), free, threshold).describe()
        for (free, threshold), names in by_space.items()
    ]


# --- recognising a write that ran out of space ---------------------------------------------


def storage_full_reason(error: BaseException) -> str | None:
    """Why ``error`` (or an error it wraps) is a full disk, in words; None when it is not one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = _own_storage_full_reason(current)
        if reason is not None:
            return reason
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


def _own_storage_full_reason(error: BaseException) -> str | None:
    if isinstance(error, OSError) and error.errno in STORAGE_FULL_ERRNOS:
        return f"storage full: {error.strerror or 'no space left on device'}"
    if getattr(error, "sqlite_errorname", None) == "SQLITE_FULL":
        return "storage full: the database or its disk is full"
    if getattr(error, "sqlstate", None) == POSTGRES_DISK_FULL:
        return "storage full: the database server's disk is full"
    if RUST_STORAGE_FULL.search(str(error)):
        return "storage full: no space left on device"  # safetensors' writer, in Rust
    return None


def raise_if_storage_full(error: BaseException) -> None:
    """Turn an error that is a full disk, however wrapped, into InsufficientStorage (507)."""
    reason = storage_full_reason(error)
    if reason is not None:
        STORAGE_FULL_LOG.note(reason)
        raise InsufficientStorage(reason) from error


class StorageFullLog:
    """When this process last failed a write for lack of space, so that the reconciler can say
    why a worker that could not report went silent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, str] | None = None

    def note(self, reason: str) -> None:
        with self._lock:
            self._last = (time.monotonic(), reason)

    def recent(self, within_seconds: float) -> str | None:
        with self._lock:
            last = self._last
        if last is None or time.monotonic() - last[0] > within_seconds:
            return None
        return last[1]


STORAGE_FULL_LOG = StorageFullLog()
