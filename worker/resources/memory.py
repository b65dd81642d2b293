"""This worker's memory: how much a job may use here, and whether the kernel killed one for it.

At claim, before any data is loaded, the job's estimated peak (app/jobs/memory.py) is compared with
this worker's budget: ``TAAS_WORKER_MEMORY_BYTES`` when set, else the memory free right now (the
host's MemAvailable, or what the worker's cgroup limit leaves, whichever is less, plus what this
process already holds, which the estimate counts as its framework share) or, for a CUDA job, the
GPU's free memory. A job that does not fit fails as the user's error, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from taas.app.core.config import Settings
from taas.app.core.kernel_memory import host_memory, resident_bytes
from taas.app.jobs.memory import DeviceKind, MemoryEstimate, estimate_memory, format_bytes
from taas.app.spec import DatasetInfo, JobSpec
from taas.worker.resources.devices import jobs_per_gpu
from taas.worker.trainer.accel import plan_acceleration


class NotEnoughMemory(Exception):
    """The job's estimated peak exceeds this worker's budget; the message says what to lower."""


@dataclass(frozen=True)
class Budget:
    free: int  # bytes a job may use now
    total: int  # the most it could ever have here (the limit or the device's size)
    source: str  # where ``free`` comes from, in words


def check_fits(spec: JobSpec, info: DatasetInfo, settings: Settings) -> MemoryEstimate:
    """The job's estimate on the device it will train on; NotEnoughMemory if it cannot fit."""
    device = _device_kind(spec)
    amp = plan_acceleration(spec.acceleration, spec.model, torch.device(device)).amp
    estimate = estimate_memory(spec, info, device=device, amp=amp)
    budget = memory_budget(settings, device)
    if estimate.total > budget.free:
        raise NotEnoughMemory(_refusal(estimate, budget))
    return estimate


def _device_kind(spec: JobSpec) -> DeviceKind:
    wants_cuda = spec.device in ("auto", "cuda")
    return "cuda" if wants_cuda and torch.cuda.is_available() else "cpu"


def _refusal(estimate: MemoryEstimate, budget: Budget) -> str:
    message = (
        f"does not fit in this worker's memory: the job needs {estimate.describe()}, and "
        f"{budget.source} is {format_bytes(budget.free)}"
    )
    if estimate.total <= budget.total:
        # It would fit an idle worker: say so, since lowering the spec is not the only way out.
        message += (
            f" (of {format_bytes(budget.total)}; other processes on this host use the rest, so "
            "submitting it again when the host is less busy may also work)"
        )
    return f"{message}; to fit, {estimate.advice(budget.free)}"


def memory_budget(settings: Settings, device: DeviceKind) -> Budget:
    if settings.worker_memory_bytes is not None:
        size = settings.worker_memory_bytes
        return Budget(size, size, "its budget (TAAS_WORKER_MEMORY_BYTES)")
    if device == "cuda" and jobs_per_gpu() > 1:
        # The GPU's other jobs hold memory now and give it back later: the job waits for its
        # share (worker/resources/gpu_share.py); here it must only fit the device.
        total = torch.cuda.mem_get_info()[1]
        return Budget(total, total, "the GPU's memory")
    if device == "cuda":
        free, total = torch.cuda.mem_get_info()
        # This process's cached blocks are free to the job too.
        return Budget(free + torch.cuda.memory_reserved(), total, "the GPU's free memory")
    return host_budget()


def host_budget() -> Budget:
    """Free RAM now, the cgroup's limit first: a container sees the host's MemAvailable."""
    free, total, limited = host_memory()
    if limited:
        source = "the room left under its cgroup's memory limit"
    else:
        source = "the host's available memory"
    # What this process holds already (PyTorch, the worker) is counted in the estimate.
    return Budget(free + resident_bytes(), total, source)
