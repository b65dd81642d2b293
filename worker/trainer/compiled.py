"""torch.compile, paid once per architecture rather than once per job.

A worker trains many jobs, often of the same few networks. Three things make the second job of
an architecture cheap, and one keeps a long-lived worker from quietly losing them:

1. On disk: Inductor's FX graph cache and AOTAutograd's cache, kept under ``TAAS_HOME`` (one
   folder per torch version) instead of a temporary folder. A new process that compiles an
   architecture seen before loads the generated kernels instead of generating and building them
   again. Inductor keys each entry by the graph, the torch version, the device, the number of
   CPU threads its kernels are built for, and its own settings, so a changed spec, torch or
   device never reuses a wrong graph (and a job given another thread count compiles again).
2. In memory: dynamo keeps the compiled code on the training step's code object
   (``_ForwardLoss.forward``, in run.py). A later job of the same architecture in this process
   matches its guards and does not compile at all.
3. The cliff: dynamo keeps at most ``recompile_limit`` (8) compiled variants per code object and
   past that runs the step eagerly, with only a log warning. Every architecture is one variant
   of that one code object, so a worker serving many users' specs would fall off it at the 9th.
   This module counts the architectures compiled in this process and resets dynamo before the
   next would leave too little room under the limit (the disk caches keep the reset cheap), and
   turns dynamo's silent fallback into an error (``fail_on_recompile_limit_hit``) that the step
   catches: it then runs eagerly, and the job's report says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch._dynamo
from torch._dynamo.exc import FailOnRecompileLimitHit
from torch._dynamo.utils import counters

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "TORCHINDUCTOR_CACHE_DIR"
CHOSEN_ENV = "TAAS_COMPILE_CACHE_DIR"  # the folder use_disk_cache chose, to tell it from yours
# Dynamo variants one architecture may take: one, and room for one more (a job may meet a shape
# or a guard it did not expect, e.g. a resumed run).
VARIANTS_PER_ARCHITECTURE = 2

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def use_disk_cache(home: Path) -> Path:
    """Keep Inductor's caches in ``home``/cache/compile/torch-VERSION from now on, unless the
    operator chose a folder with TORCHINDUCTOR_CACHE_DIR. Returns the folder in use."""
    current = os.environ.get(CACHE_DIR_ENV)
    # A folder taas chose (here, or in the process that started this one) is not the operator's.
    chosen_by_taas = current is not None and current == os.environ.get(CHOSEN_ENV)
    if current is not None and not chosen_by_taas and not _is_default(current):
        return Path(current)
    folder = (home / "cache" / "compile" / f"torch-{torch.__version__}").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_DIR_ENV] = os.environ[CHOSEN_ENV] = str(folder)
    return folder


def _is_default(path: str) -> bool:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return os.path.abspath(path) == os.path.abspath(default_cache_dir())


def architecture_key(description: dict[str, Any]) -> str:
    """A short stable key for everything that shapes the compiled step."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CompiledArchitectures:
    """The architectures this process has compiled since dynamo's last reset, oldest first."""

    def __init__(self) -> None:
        self.keys: OrderedDict[str, None] = OrderedDict()
        self.resets = 0

    @staticmethod
    def limit() -> int:
        """How many architectures fit under dynamo's recompile limit, as configured now."""
        return max(1, int(torch._dynamo.config.recompile_limit) // VARIANTS_PER_ARCHITECTURE)

    def admit(self, key: str) -> bool:
        """Make room for ``key``; True when it is compiled in memory already."""
        if key in self.keys:
            self.keys.move_to_end(key)
            return True
        if len(self.keys) >= self.limit():
            # Dynamo cannot drop one variant of a code object: it forgets everything, and the
            # architectures kept come back from the disk caches when next used.
            torch._dynamo.reset()
            self.keys.clear()
            self.resets += 1
        self.keys[key] = None
        return False


ARCHITECTURES = CompiledArchitectures()


def forget_compiled() -> None:
    """Drop everything this process compiled, as if it had just started (the disk caches stay)."""
    torch.compiler.reset()
    ARCHITECTURES.keys.clear()


@dataclass
class CompiledStep:
    """The compiled training step, measuring what its first calls cost and falling back to
    eager (said in the report) if dynamo refuses to compile it."""

    eager: Step
    compiled: Step
    in_memory: bool  # this process compiled the architecture already
    ran: str = "compiled"
    reason: str | None = None
    calls: int = 0
    first_seconds: float | None = None
    second_seconds: float | None = None
    counts_before: dict[str, int] = field(default_factory=dict)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.ran == "eager":
            return self.eager(x, y)
        try:
            return self.compiled(x, y)
        except FailOnRecompileLimitHit:
            self.ran = "eager"
            self.reason = "dynamo's recompile limit was reached; this job ran eagerly"
            logger.warning("torch.compile: %s", self.reason)
            return self.eager(x, y)

    def timed(self, step: Callable[[], Any], synchronize: Callable[[], None]) -> Any:
        """Run one whole training step (forward, backward, optimizer) through ``step``; the first
        two are timed (the first compiles, the second runs what was compiled)."""
        self.calls += 1
        if self.calls > 2:
            return step()
        started = time.perf_counter()
        result = step()
        synchronize()
        seconds = time.perf_counter() - started
        if self.calls == 1:
            self.first_seconds = seconds
        else:
            self.second_seconds = seconds
        return result

    def report(self) -> dict[str, object]:
        """What ran, how long compiling took (the first step's time over the second's) and
        where the compiled code came from: "memory" (this process had it), "disk" (the
        on-disk caches had every graph), "partial" or "none" (compiled from scratch)."""
        compile_seconds = None
        if self.first_seconds is not None and self.second_seconds is not None:
            compile_seconds = round(max(0.0, self.first_seconds - self.second_seconds), 3)
        hits, misses = _cache_counts(self.counts_before)
        if self.in_memory and hits == misses == 0:
            cache = "memory"
        elif hits and not misses:
            cache = "disk"
        else:
            cache = "partial" if hits else "none"
        return {
            "ran": self.ran,
            "reason": self.reason,
            "cache": cache,
            "compile_seconds": compile_seconds,
            "graph_cache_hits": hits,
            "graph_cache_misses": misses,
        }


def compile_step(module: torch.nn.Module, key: str, mode: str) -> CompiledStep:
    """torch.compile ``module`` (the step's forward and loss) for the architecture ``key``."""
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    in_memory = ARCHITECTURES.admit(key)
    compiled = torch.compile(module, mode=mode)
    return CompiledStep(module, compiled, in_memory, counts_before=_cache_snapshot())


def _cache_snapshot() -> dict[str, int]:
    return {
        name: counters[group][name] for group, names in _CACHE_COUNTERS.items() for name in names
    }


def _cache_counts(before: dict[str, int]) -> tuple[int, int]:
    now = _cache_snapshot()
    hits = sum(now[name] - before.get(name, 0) for name in now if name.endswith("_hit"))
    misses = sum(now[name] - before.get(name, 0) for name in now if name.endswith("_miss"))
    return hits, misses


_CACHE_COUNTERS = {
    "inductor": ("fxgraph_cache_hit", "fxgraph_cache_miss"),
    "aot_autograd": ("autograd_cache_hit", "autograd_cache_miss"),
}
