"""Several jobs on one GPU (`taas worker --gpus 0 --jobs-per-gpu N`) divide its memory.

Each job process reserves a share of the GPU in a small ledger file (one per GPU, under
TAAS_HOME, guarded by a file lock, so every worker process on the host that uses the GPU sees
it) before it loads anything, and caps its own allocations at that share with
``torch.cuda.set_per_process_memory_fraction``: a job that outgrows its estimate runs out of
memory itself instead of taking its neighbours down. A share is the job's estimated peak with a
margin, and never less than 1/N of the GPU, so N small jobs run side by side and a big one waits
until the others have left it room. A job too big for the whole GPU fails as before, with what
to lower. The share of a job whose process died is freed when the next job reads the ledger.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from taas.app.jobs.memory import format_bytes

# Of the device's memory, what jobs may reserve: the CUDA contexts and fragmentation take the rest.
USABLE_FRACTION = 0.92
# A job's share over its estimated peak: the estimate is an estimate.
ESTIMATE_MARGIN = 1.2


class GpuTooSmall(Exception):
    """The job needs more than the whole GPU could give it."""


@dataclass(frozen=True)
class GpuShare:
    folder: Path  # where the ledgers live (one per GPU)
    gpu: str  # the GPU's id on this machine
    total_bytes: int  # the device's memory
    jobs_per_gpu: int

    @property
    def usable_bytes(self) -> int:
        return int(self.total_bytes * USABLE_FRACTION)

    def share_for(self, estimated_bytes: int) -> int:
        """The bytes a job of this estimated peak reserves."""
        return max(int(estimated_bytes * ESTIMATE_MARGIN), self.usable_bytes // self.jobs_per_gpu)

    def reserve(
        self,
        job_id: str,
        estimated_bytes: int,
        should_stop: Callable[[], bool],
        on_wait: Callable[[str], None],
        poll_seconds: float = 1.0,
    ) -> int | None:
        """Reserve the job's share, waiting while the GPU's other jobs hold too much of it.
        Returns the bytes reserved, or None when should_stop() ended the wait."""
        share = self.share_for(estimated_bytes)
        if share > self.usable_bytes:
            raise GpuTooSmall(
                f"the job needs {format_bytes(share)} of GPU memory (its estimate and a margin), "
                f"more than GPU {self.gpu} has for jobs ({format_bytes(self.usable_bytes)})"
            )
        said = False
        while True:
            held = self._reserve_if_room(job_id, share)
            if held is None:
                return share
            if should_stop():
                return None
            if not said:
                on_wait(
                    f"waiting for {format_bytes(share)} of GPU {self.gpu}: the other jobs on it "
                    f"hold {format_bytes(held)} of {format_bytes(self.usable_bytes)}"
                )
                said = True
            time.sleep(poll_seconds)

    def release(self, job_id: str) -> None:
        with self._ledger() as ledger:
            ledger.pop(job_id, None)

    def held_by_others(self, job_id: str) -> int:
        with self._ledger() as ledger:
            return sum(entry["bytes"] for key, entry in ledger.items() if key != job_id)

    def _reserve_if_room(self, job_id: str, share: int) -> int | None:
        """Reserve and return None, or return what the others hold when there is no room."""
        with self._ledger() as ledger:
            held = sum(entry["bytes"] for key, entry in ledger.items() if key != job_id)
            if held + share > self.usable_bytes:
                return held
            ledger[job_id] = {"bytes": share, "pid": os.getpid()}
            return None

    @contextmanager
    def _ledger(self) -> Iterator[dict[str, dict[str, int]]]:
        """The GPU's reservations of living processes, locked; changes are written back."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"gpu{self.gpu}.json"
        with (self.folder / f"gpu{self.gpu}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entries = _read(path)
                ledger = {key: entry for key, entry in entries.items() if _alive(entry["pid"])}
                yield ledger
                temporary = path.with_suffix(".tmp")
                temporary.write_text(json.dumps(ledger), encoding="utf-8")
                temporary.replace(path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _read(path: Path) -> dict[str, dict[str, int]]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet (writes replace the file whole, so it is never half-written)
    return entries if isinstance(entries, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True
