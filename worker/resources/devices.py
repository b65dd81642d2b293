"""Which GPU a worker process trains on.

`taas worker --gpus 0,1,2,3` runs one pool process per listed GPU, and each process sees only its
own (CUDA_VISIBLE_DEVICES, set before CUDA starts in that process). With `--jobs-per-gpu N` it
runs N processes per GPU: processes 0..N-1 share the first GPU, N..2N-1 the second, and so on;
their jobs divide the GPU's memory between them (gpu_share.py). Celery gives a process that
replaces a dead one the dead one's index, and so its GPU.
"""

from __future__ import annotations

import os
import re

# The GPU ids of this worker; set by `taas worker --gpus` for its children.
GPUS_ENV = "TAAS_WORKER_GPUS"
# How many pool processes (jobs at once) each GPU has; set by `taas worker --jobs-per-gpu`.
JOBS_PER_GPU_ENV = "TAAS_WORKER_JOBS_PER_GPU"
MAX_JOBS_PER_GPU = 64
GPU_ID = re.compile(r"^\d{1,3}$")

_pinned: str | None = None  # the GPU this process was given, if any


def parse_gpus(text: str) -> list[str]:
    """'0,1, 3' -> ['0', '1', '3']; ValueError naming what is wrong otherwise."""
    gpus = [part.strip() for part in text.split(",")]
    bad = [gpu for gpu in gpus if not GPU_ID.match(gpu)]
    if bad:
        raise ValueError(f"GPU ids are numbers like 0,1,2; not {', '.join(map(repr, bad))}")
    if len(set(gpus)) != len(gpus):
        raise ValueError(
            f"a GPU is listed twice in {text!r}: list each once (--jobs-per-gpu runs several "
            "jobs on each)"
        )
    return gpus


def jobs_per_gpu() -> int:
    """How many jobs share each of this worker's GPUs (1 unless `--jobs-per-gpu` said more)."""
    return int(os.environ.get(JOBS_PER_GPU_ENV) or 1)


def pin_gpu(index: int) -> str | None:
    """Give this process the GPU of pool process ``index``, if the worker has a GPU list."""
    global _pinned
    listed = os.environ.get(GPUS_ENV)
    if not listed:
        return None
    _pinned = parse_gpus(listed)[index // jobs_per_gpu()]
    os.environ["CUDA_VISIBLE_DEVICES"] = _pinned
    return _pinned


def pinned_gpu() -> str | None:
    """The GPU id this process was given (as the machine numbers it), if any."""
    return _pinned


def device_label() -> str:
    """'/gpu1' in a process pinned to GPU 1, else '': part of the worker name on each attempt."""
    return f"/gpu{_pinned}" if _pinned is not None else ""
