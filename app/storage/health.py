"""Whether the object store answers, asked at most every few seconds per process, so that a
store that is down costs each request a dictionary lookup, not a timeout."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from taas.app.storage.objects import ObjectStore, StorageUnavailable

CHECK_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class _Reading:
    at: float
    problem: str | None


_readings: dict[str, _Reading] = {}
_lock = threading.Lock()


def storage_problem(store: ObjectStore) -> str | None:
    """Why the store cannot be used now, or None. The filesystem's room is watched elsewhere
    (core.storage_space)."""
    if not store.direct:
        return None
    now = time.monotonic()
    with _lock:
        reading = _readings.get(store.name)
    if reading is not None and now - reading.at < CHECK_EVERY_SECONDS:
        return reading.problem
    try:
        store.check()
        problem = None
    except StorageUnavailable as error:
        problem = error.message
    with _lock:
        _readings[store.name] = _Reading(time.monotonic(), problem)
    return problem


def require_storage(store: ObjectStore, what: str) -> None:
    """503 with Retry-After while the store is down: new work would have nowhere to go."""
    problem = storage_problem(store)
    if problem is not None:
        raise StorageUnavailable(f"{what} refused for now: {problem}; retry later")


def forget_readings() -> None:
    with _lock:
        _readings.clear()
