"""Where the bench ran: the machine, the device the runs train on, and the code version."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from taas.worker.trainer.bench.workload import BenchError


@dataclass
class Machine:
    cpu: str
    cores: int
    usable_cores: int  # this process's CPU affinity
    torch: str
    torch_threads: int
    cuda_device: str | None
    python: str
    platform: str


def machine_info() -> Machine:
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Machine(
        cpu=cpu_model(),
        cores=os.cpu_count() or 0,
        usable_cores=usable or 0,
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        cuda_device=cuda,
        python=platform.python_version(),
        platform=platform.platform(),
    )


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown"


def git_commit() -> str:
    """The short commit of the checkout this file lives in, or "unknown" (no git, no repo)."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return found.stdout.strip() or "unknown"


def resolve_device(requested: str) -> str:
    """Where the runs will train; asking for cuda without one is an error, not a quiet cpu run."""
    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise BenchError("--device cuda: PyTorch sees no CUDA device on this machine")
    return "cpu"


def describe(machine: Machine) -> str:
    cuda = machine.cuda_device or "none"
    return (
        f"{machine.cpu}, {machine.cores} cores ({machine.usable_cores} usable, "
        f"{machine.torch_threads} torch threads), torch {machine.torch}, CUDA device: {cuda}, "
        f"Python {machine.python}"
    )
