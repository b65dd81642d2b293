"""Timed runs of our trainer: train() on the clock with the GPU synchronized, the process's
torch settings put back after, and samples/s over the epochs after the first."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from taas.app.spec import JobSpec
from taas.worker.trainer.bench.results import Spread
from taas.worker.trainer.bench.workload import BenchError, Echo
from taas.worker.trainer.compiled import forget_compiled
from taas.worker.trainer.data import Dataset
from taas.worker.trainer.loop import TrainResult, train
from taas.worker.trainer.run import MetricPoint
from taas.worker.trainer.series import StepPoint


class BenchContext:
    """A TrainContext that records metrics and echoes progress; never stops, keeps no checkpoint."""

    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.points: list[MetricPoint] = []
        self.threads: set[int] = set()

    def report_progress(self, epoch: int, batches_done: int, batches: int, samples: int) -> None:
        pass  # the benchmark echoes per epoch only

    def report_step(self, point: StepPoint) -> None:
        pass

    def report_start(self, device: str, acceleration: dict[str, object]) -> None:
        pass

    def report_metrics(self, point: MetricPoint) -> None:
        self.points.append(point)
        # What the run really used: the trainer may pick its own count (and sets it back after).
        self.threads.add(torch.get_num_threads())
        accuracy = "-" if point.val_accuracy is None else f"{point.val_accuracy:.4f}"
        self.echo(
            f"      epoch {point.epoch}: {point.epoch_seconds:.2f} s, "
            f"{point.samples_per_second:,.0f} samples/s, val accuracy {accuracy}"
        )

    def should_prune(self) -> bool:
        return False

    def should_stop(self) -> bool:
        return False

    def checkpoint_on_stop(self) -> bool:
        return False

    def log(self, message: str) -> None:
        self.echo(f"      trainer: {message}")

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """A benchmark run is never resumed: nothing to keep."""

    def load_checkpoint(self) -> dict[str, Any] | None:
        return None


@dataclass
class TimedRun:
    result: TrainResult
    points: list[MetricPoint]
    wall_seconds: float
    threads: int | None  # the most CPU threads seen at an epoch's report (None: no epoch ended)


def run_timed(
    spec: JobSpec, load: Callable[[], Dataset], echo: Echo, *, fresh: bool = True
) -> TimedRun:
    """load() then train(spec), timed together, with the process's torch settings put back
    after; ``fresh``: nothing compiled in this process before (as in a new worker process)."""
    context = BenchContext(echo)
    with restored_torch_globals():
        if fresh:
            forget_compiled()
        started = time.perf_counter()
        result = train(spec, load(), context)
        synchronize(result.device)
        wall_seconds = time.perf_counter() - started
    return TimedRun(result, context.points, wall_seconds, max(context.threads, default=None))


@contextlib.contextmanager
def restored_torch_globals() -> Iterator[None]:
    """Put back the process-wide settings a run may change (threads, matmul precision, cuDNN
    autotuning), so that an "auto" run cannot speed up or slow down the "off" run after it.

    Uses the same (legacy) precision API as the trainer: PyTorch refuses a mix of the two.
    """
    threads = torch.get_num_threads()
    precision = torch.get_float32_matmul_precision()
    benchmark = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.benchmark = benchmark


def synchronize(device: str) -> None:
    """Wait for the GPU work `device` still has queued, so a clock read afterwards counts it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def steady_throughput(points: Sequence[MetricPoint]) -> Spread:
    """samples/s over the epochs after the first: the first pays for warm-up and compilation."""
    first = points[0].epoch if points else 0
    steady = [point.samples_per_second for point in points if point.epoch > first]
    if not steady:
        raise BenchError(
            f"samples/s leaves out the first epoch, so a run needs 2 epochs; it ran {len(points)}"
        )
    return Spread.of(steady)
