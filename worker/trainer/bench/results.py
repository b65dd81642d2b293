"""What the bench measures, run by run and summarized: the figures of the report and its JSON."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taas.app.spec import JobSpec
from taas.worker.trainer.bench.machine import Machine
from taas.worker.trainer.bench.workload import Mode


@dataclass(frozen=True)
class Spread:
    """Median and range of a few measurements."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no measurements to summarize")
        return cls(statistics.median(values), min(values), max(values))

    def show(self, spec: str) -> str:
        """'median (low-high)', or the median alone when every run measured the same."""
        if self.low == self.high:
            return format(self.median, spec)
        return f"{self.median:{spec}} ({self.low:{spec}}-{self.high:{spec}})"


@dataclass
class SpeedRun:
    """One train() of (a)."""

    samples_per_second: Spread  # over the epochs after the first (warm-up, compile)
    test_accuracy: float
    wall_seconds: float  # train() alone: the dataset was loaded before
    epochs: int
    threads: int | None  # CPU threads while training, as seen at each epoch's report
    acceleration: dict[str, object]  # what the trainer says it applied


@dataclass
class ModeSummary:
    """The runs of one network under one acceleration mode."""

    acceleration: Mode
    samples_per_second: Spread  # of the runs' medians
    test_accuracy: Spread
    wall_seconds: Spread
    runs: list[SpeedRun]

    @classmethod
    def of(cls, mode: Mode, runs: list[SpeedRun]) -> ModeSummary:
        return cls(
            acceleration=mode,
            samples_per_second=Spread.of([run.samples_per_second.median for run in runs]),
            test_accuracy=Spread.of([run.test_accuracy for run in runs]),
            wall_seconds=Spread.of([run.wall_seconds for run in runs]),
            runs=runs,
        )


@dataclass
class SameSpecComparison:
    network: str
    label: str
    spec: dict[str, Any]  # the "off" spec; "auto" differs only in acceleration
    off: ModeSummary
    auto: ModeSummary
    speedup: float  # auto / off, of the median samples/s
    accuracy_delta_points: float  # auto - off, of the median test accuracy, in percentage points


@dataclass
class TargetRun:
    """One run of (b), timed from before load_dataset to the end of train()."""

    wall_seconds: float
    epochs: int
    reached: bool  # the returned model's test accuracy is at least the target
    stop_reason: str
    test_accuracy: float
    threads: int | None  # CPU threads while training, as seen at each epoch's report
    acceleration: dict[str, object]

    @property
    def compile_cache(self) -> str | None:
        """Where the compiled step came from (compiled.py's report), None if it ran eagerly."""
        report = self.acceleration.get("compile")
        if not isinstance(report, dict) or report.get("ran") != "compiled":
            return None
        return str(report["cache"])


@dataclass
class RecipeSummary:
    recipe: str
    spec: dict[str, Any]
    wall_seconds: Spread
    epochs: Spread
    test_accuracy: Spread
    reached: int  # how many of the runs reached the target
    runs: list[TargetRun]

    @classmethod
    def of(cls, recipe: str, spec: JobSpec, runs: list[TargetRun]) -> RecipeSummary:
        return cls(
            recipe=recipe,
            spec=spec.model_dump(mode="json"),
            wall_seconds=Spread.of([run.wall_seconds for run in runs]),
            epochs=Spread.of([run.epochs for run in runs]),
            test_accuracy=Spread.of([run.test_accuracy for run in runs]),
            reached=sum(run.reached for run in runs),
            runs=runs,
        )


@dataclass
class Comparison:
    """One recipe's runs against the baseline's."""

    summary: RecipeSummary
    # baseline / these, of the median wall seconds; None unless every one reached the target
    speedup: float | None
    # True when some baseline run stopped short of the target: its time is then a lower bound
    speedup_is_lower_bound: bool

    @classmethod
    def against(cls, baseline: RecipeSummary, summary: RecipeSummary) -> Comparison:
        return cls(summary, *target_speedup(baseline, summary))


@dataclass
class TimeToTarget:
    target: float
    baseline: RecipeSummary
    ours: Comparison  # every run of our recipe
    # Where our recipe compiled: its first run (cold: nothing compiled in the process, an empty
    # compile cache) and the later ones (warm: compiled in this process before), apart.
    cold: Comparison | None
    warm: Comparison | None


@dataclass
class BenchReport:
    commit: str
    machine: Machine
    device: str  # where the runs trained
    started_at: str
    options: dict[str, Any]  # as resolved for this device
    same_spec: list[SameSpecComparison]
    time_to_target: list[TimeToTarget]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def target_speedup(baseline: RecipeSummary, ours: RecipeSummary) -> tuple[float | None, bool]:
    """(baseline / ours median wall time, whether that is only a lower bound).

    A baseline run that stopped short of the target would have taken longer to reach it, so the
    ratio is then a lower bound; if one of our runs stopped short, there is no ratio to claim.
    """
    if ours.reached < len(ours.runs):
        return None, False
    lower_bound = baseline.reached < len(baseline.runs)
    return baseline.wall_seconds.median / ours.wall_seconds.median, lower_bound
