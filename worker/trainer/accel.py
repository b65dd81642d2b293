"""Which speed-ups to apply on this device, and why the others are skipped.

``acceleration: "off"`` is the honest baseline: the loop of the PyTorch tutorial (DataLoader, fp32,
eager, default threads). ``"auto"`` turns on what measured faster on the device (see bench/);
the object form lets a user force each switch. The plan is recorded on the job, so a user sees
what ran and why.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Literal

import torch

from taas.app.spec import AccelerationSpec, NetworkSpec
from taas.worker.trainer.networks import can_pool_first

Switch = Literal[
    "data_on_device",
    "amp",
    "channels_last",
    "pool_first",
    "fused_optimizer",
    "compile",
    "cuda_graphs",
]
SWITCHES: tuple[Switch, ...] = (
    "data_on_device",
    "amp",
    "channels_last",
    "pool_first",
    "fused_optimizer",
    "compile",
    "cuda_graphs",
)
POOL_FIRST_NEEDS = "needs a cnn with max-pooling after a non-decreasing activation"


@dataclass
class AccelPlan:
    mode: Literal["off", "auto", "custom"]
    data_on_device: bool = False
    amp: bool = False  # bf16 autocast for forward and loss; weights, grads and BN stats stay fp32
    channels_last: bool = False
    pool_first: bool = False  # max-pool before a monotonic activation: same function, 1/4 the work
    fused_optimizer: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    threads: int | None = None  # CPU intra-op threads; None leaves PyTorch's default
    reasons: dict[str, str] = field(default_factory=dict)  # why each switch is on or off

    def report(self) -> dict[str, object]:
        applied = [name for name in SWITCHES if getattr(self, name)]
        return {
            "mode": self.mode,
            "applied": applied,
            "skipped": {name: self.reasons[name] for name in SWITCHES if name not in applied},
            "reasons": {name: self.reasons[name] for name in applied},
            "threads": self.threads,
        }


def cpu_supports_bf16() -> bool:
    """Native bf16 dot products (AVX512-BF16 or AMX): without them bf16 on a CPU is emulated."""
    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(checker()) if checker is not None else False


def free_cores(sample_seconds: float = 0.2) -> int:
    """Cores this process may use minus those other processes keep busy right now.

    Measured from /proc/stat over a short window (the load average lags by a minute and would
    still count a job that just ended); without /proc, every allowed core.
    """
    allowed = allowed_cores()
    try:
        before = _cpu_times()
        time.sleep(sample_seconds)
        after = _cpu_times()
    except (OSError, ValueError):
        return allowed
    total = sum(after) - sum(before)
    idle = (after[3] + after[4]) - (before[3] + before[4])  # idle + iowait
    busy_cores = (os.cpu_count() or allowed) * (1 - idle / total) if total > 0 else 0.0
    return max(1, min(allowed, round(allowed - busy_cores)))


def allowed_cores() -> int:
    """The cores this process may run on."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return allowed or 1


def keep_threads_of_resumed_attempt(plan: AccelPlan, saved: int | None) -> str | None:
    """On the CPU, a resumed run uses the thread count of the attempt it resumes, and says so.

    The count decides how oneDNN and BLAS split each sum across threads, and float additions
    done in another order round differently: with the same count a resumed run is bit-for-bit
    the run without a stop; with another it differs in the last bits, and more as training goes
    on. So the count free_cores() picks from the load of the moment is not asked again. (On
    CUDA, cuDNN's autotuned kernels make no bit-for-bit promise to keep.)
    """
    current = plan.threads or torch.get_num_threads()
    if saved is None or saved == current:
        return None
    if saved > allowed_cores():
        return (
            f"the attempt before used {saved} CPU threads and only {allowed_cores()} cores are "
            f"allowed here: going on with {current}, so the result may differ in the last bits "
            "from a run without a stop"
        )
    plan.threads = saved
    return f"{saved} CPU threads, as the attempt it resumes (the same sums in the same order)"


def _cpu_times() -> list[int]:
    """The machine's cumulative CPU times (user, nice, system, idle, iowait, ...) in ticks."""
    with open("/proc/stat") as stat:
        return [int(value) for value in stat.readline().split()[1:]]


def plan_acceleration(
    requested: Literal["off", "auto"] | AccelerationSpec,
    model: NetworkSpec,
    device: torch.device,
) -> AccelPlan:
    if requested == "off":
        reasons: dict[str, str] = dict.fromkeys(
            SWITCHES, "acceleration is off: the plain PyTorch tutorial loop"
        )
        return AccelPlan(mode="off", reasons=reasons)
    plan = _auto_plan(model, device)
    if isinstance(requested, AccelerationSpec):
        _apply_overrides(plan, requested, model, device)
    return plan


def _auto_plan(model: NetworkSpec, device: torch.device) -> AccelPlan:
    cuda = device.type == "cuda"
    convnet = model.arch in ("cnn", "resnet")
    plan = AccelPlan(mode="auto")
    _decide(plan, "data_on_device", True, "the whole split as uint8 on the device, no DataLoader")
    if cuda:
        bf16 = torch.cuda.is_bf16_supported()
        _decide(plan, "amp", bf16, "bf16 tensor cores" if bf16 else "this GPU has no bf16")
    else:
        native = cpu_supports_bf16()
        _decide(
            plan,
            "amp",
            native and convnet,
            "native CPU bf16 speeds up convolutions"
            if native and convnet
            else "small matmuls are not faster in bf16 on a CPU"
            if native
            else "this CPU has no native bf16",
        )
    _decide(
        plan,
        "channels_last",
        convnet,
        "NHWC convolutions are faster" if convnet else "no convolutions in this network",
    )
    _decide(plan, "pool_first", *_pool_first_decision(model))
    _decide(plan, "fused_optimizer", True, "one fused kernel for the whole optimizer step")
    _decide(
        plan,
        "compile",
        cuda,
        "torch.compile fuses kernels (its time counts in the job)"
        if cuda
        else "on CPU the compile time outweighs the gain for networks this size",
    )
    _decide(
        plan,
        "cuda_graphs",
        cuda,
        "replays each step as one CUDA graph" if cuda else "needs a CUDA device",
    )
    if not cuda:
        plan.threads = free_cores()
    return plan


def _pool_first_decision(model: NetworkSpec) -> tuple[bool, str]:
    if can_pool_first(model):
        return True, "max-pooling before the activation gives the same result on 1/4 the values"
    return False, POOL_FIRST_NEEDS


def _decide(plan: AccelPlan, switch: Switch, on: bool, reason: str) -> None:
    setattr(plan, switch, on)
    plan.reasons[switch] = reason


def _apply_overrides(
    plan: AccelPlan, requested: AccelerationSpec, model: NetworkSpec, device: torch.device
) -> None:
    plan.mode = "custom"
    for switch in SWITCHES:
        value = getattr(requested, switch)
        if value is not None:
            _decide(plan, switch, value, "set in the spec")
    if requested.threads is not None:
        plan.threads = requested.threads
    if plan.pool_first and not can_pool_first(model):
        _decide(plan, "pool_first", False, POOL_FIRST_NEEDS)
    if device.type != "cuda" and plan.cuda_graphs:
        _decide(plan, "cuda_graphs", False, "needs a CUDA device")
    if plan.cuda_graphs and not plan.compile:
        _decide(plan, "cuda_graphs", False, "CUDA graphs are applied through torch.compile")
    if plan.amp and device.type == "cpu" and not cpu_supports_bf16():
        _decide(plan, "amp", False, "this CPU has no native bf16")
