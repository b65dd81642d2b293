"""Which GPU a worker process trains on: one job per device.

`taas worker --gpus 0,1,2,3` runs one pool process per listed GPU, and each process sees only its
own (CUDA_VISIBLE_DEVICES, set before CUDA starts in that process), so two jobs never share a
device. Celery gives a process that replaces a dead one the dead one's index, and so its GPU.
"""

from __future__ import annotations

import os
import re

# The GPU ids of this worker, in pool process order; set by `taas worker --gpus` for its children.
GPUS_ENV = "TAAS_WORKER_GPUS"
GPU_ID = re.compile(r"^\d{1,3}$")

_pinned: str | None = None  # the GPU this process was given, if any


def parse_gpus(text: str) -> list[str]:
    """'0,1, 3' -> ['0', '1', '3']; ValueError naming what is wrong otherwise."""
    gpus = [part.strip() for part in text.split(",")]
    bad = [gpu for gpu in gpus if not GPU_ID.match(gpu)]
    if bad:
        raise ValueError(f"GPU ids are numbers like 0,1,2; not {', '.join(map(repr, bad))}")
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"a GPU is listed twice in {text!r}: one job per device")
    return gpus


def pin_gpu(index: int) -> str | None:
    """Give this process the index-th GPU of the worker, if the worker has a GPU list."""
    global _pinned
    listed = os.environ.get(GPUS_ENV)
    if not listed:
        return None
    _pinned = parse_gpus(listed)[index]
    os.environ["CUDA_VISIBLE_DEVICES"] = _pinned
    return _pinned


def device_label() -> str:
    """'/gpu1' in a process pinned to GPU 1, else '': part of the worker name on each attempt."""
    return f"/gpu{_pinned}" if _pinned is not None else ""
