"""Measure the accelerated trainer against the plain loop: one process, one machine, one run.

    python -m taas.worker.trainer.bench [--device cuda] [--repeats 3] [--only same-spec] ...
    taas bench ...                   (the same options)

Two questions, each answered as a ratio measured in this run on this machine:

(a) Same spec: how much faster does ``acceleration: "auto"`` train the very same network and recipe
    than ``"off"`` (the plain PyTorch loop: DataLoader, fp32, eager), and at what accuracy? Measured
    on the reference MLP and on the pytorch/examples MNIST CNN.
(b) Time to target: how long from nothing (dataset not loaded) to a test accuracy of T (one or
    more targets: 91% on a CPU, 93% and 94% on a GPU), for the pytorch/examples-style loop versus
    our default recipe for the device? Where our recipe compiles, its first run per target starts
    cold (nothing compiled in this process, an empty compile cache) and the later runs warm (the
    step compiled in this process before, as in a worker that trained the architecture already).

Progress lines go to stderr as the runs finish; the markdown report goes to stdout at the end and
the full numbers (every run) to a JSON file, both stamped with the machine and the git commit.
Measuring follows airbench: the first epoch (warm-up, compile) is left out of throughput, the GPU is
synchronized before a clock is read, and every figure is the median (min-max) of several runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch

from taas.app.spec import JobSpec
from taas.worker.trainer.compiled import CACHE_DIR_ENV, CHOSEN_ENV, forget_compiled
from taas.worker.trainer.data import Dataset, DatasetUnavailable, load_dataset
from taas.worker.trainer.loop import TrainResult, train
from taas.worker.trainer.run import MetricPoint
from taas.worker.trainer.series import StepPoint

Mode = Literal["off", "auto"]
MODES: tuple[Mode, ...] = ("off", "auto")  # interleaved per repeat, so drift hits both alike
Part = Literal["same-spec", "time-to-target"]
Echo = Callable[[str], None]

# The two networks of (a): the reference 784-128-10 MLP, and the CNN of pytorch/examples' MNIST.
NETWORKS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp": (
        "reference MLP (128 hidden, relu)",
        {"arch": "mlp", "hidden_sizes": [128], "activation": "relu"},
    ),
    "examples_cnn": (
        "pytorch/examples MNIST CNN",
        {
            "arch": "cnn",
            "channels": [32, 64],
            "pool_every": 2,
            "padding": "valid",
            "hidden_size": 128,
            "dropout": 0.25,
        },
    ),
}
# The recipe a user would write by hand: Adam at its default rate, small batches, no schedule.
PLAIN_RECIPE: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 64,
    "lr_schedule": "constant",
}
DEFAULT_TARGETS = {"cpu": (0.91,), "cuda": (0.93, 0.94)}  # test accuracies for (b)
DEFAULT_REPEATS_TARGET = {"cpu": 1, "cuda": 3}  # the CPU baseline takes minutes per run
BASELINE_MAX_EPOCHS = 20


class BenchError(Exception):
    """The bench cannot run as asked; the message says why."""


# --- what to run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchOptions:
    """The command-line options; None means "the default for the device"."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    repeats: int = 3  # runs of each (network, mode) in (a)
    repeats_target: int | None = None
    epochs: int = 3  # per run in (a); the first is warm-up, so at least 2
    targets: tuple[float, ...] | None = None
    target_epochs: int | None = None  # epoch budget of our recipe in (b); None: its own
    baseline_epochs: int = BASELINE_MAX_EPOCHS  # epoch budget of the examples loop in (b)
    only: Part | None = None
    out: Path | None = None
    data_dir: Path | None = None
    dataset: str = "fashion_mnist"
    dataset_options: dict[str, Any] | None = None  # for "synthetic" (the tests use a tiny one)
    recipe: dict[str, Any] = field(default_factory=dict)  # spec fields over our defaults in (b)


@dataclass(frozen=True)
class Workload:
    """The dataset and device every spec of this bench shares."""

    dataset: str
    dataset_options: dict[str, Any] | None
    device: str
    data_dir: Path | None

    def job(self, **fields: Any) -> JobSpec:
        base: dict[str, Any] = {"dataset": self.dataset, "device": self.device}
        if self.dataset_options is not None:
            base["dataset_options"] = self.dataset_options
        return JobSpec.model_validate({**base, **fields})

    def load(self) -> Dataset:
        return load_dataset(self.job(), self.data_dir)


def plain_spec(workload: Workload, model: dict[str, Any], mode: Mode, **training: Any) -> JobSpec:
    """`model` trained with PLAIN_RECIPE (plus `training`) under acceleration `mode`."""
    return workload.job(model=model, training={**PLAIN_RECIPE, **training}, acceleration=mode)


def default_recipe_spec(
    workload: Workload, target: float, epochs: int | None, recipe: dict[str, Any] | None = None
) -> JobSpec:
    """Our defaults for the device (model, recipe, acceleration "auto"), stopping at `target`
    test accuracy after at most `epochs` (None: the recipe's own); `recipe` overrides spec
    fields (e.g. `{"model": {"arch": "resnet"}}`)."""
    recipe = recipe or {}
    training = {**recipe.get("training", {}), "target_accuracy": target}
    if epochs is not None:
        training["epochs"] = epochs
    return workload.job(**{**recipe, "training": training})


# --- results -------------------------------------------------------------------------------------


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
class Machine:
    cpu: str
    cores: int
    usable_cores: int  # this process's CPU affinity
    torch: str
    torch_threads: int
    cuda_device: str | None
    python: str
    platform: str


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


# --- measuring -----------------------------------------------------------------------------------


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


def measure_same_spec(
    workload: Workload, epochs: int, repeats: int, echo: Echo
) -> list[SameSpecComparison]:
    """(a): each network trained with acceleration off and auto, same epochs, same seed."""
    echo(f"[same-spec] loading {workload.dataset}")
    dataset = workload.load()
    return [
        compare_modes(workload, dataset, network, epochs, repeats, echo) for network in NETWORKS
    ]


def compare_modes(
    workload: Workload, dataset: Dataset, network: str, epochs: int, repeats: int, echo: Echo
) -> SameSpecComparison:
    label, model = NETWORKS[network]
    runs: dict[Mode, list[SpeedRun]] = {mode: [] for mode in MODES}
    for repeat in range(1, repeats + 1):
        for mode in MODES:
            echo(f"[same-spec] {network}, acceleration {mode}, run {repeat}/{repeats}")
            spec = plain_spec(workload, model, mode, epochs=epochs)
            run = speed_run(spec, dataset, echo)
            echo(
                f"    {run.samples_per_second.show(',.0f')} samples/s, test accuracy "
                f"{run.test_accuracy:.4f}, {run.wall_seconds:.1f} s, {run.threads} threads"
            )
            runs[mode].append(run)
    off, auto = ModeSummary.of("off", runs["off"]), ModeSummary.of("auto", runs["auto"])
    return SameSpecComparison(
        network=network,
        label=label,
        spec=plain_spec(workload, model, "off", epochs=epochs).model_dump(mode="json"),
        off=off,
        auto=auto,
        speedup=auto.samples_per_second.median / off.samples_per_second.median,
        accuracy_delta_points=100 * (auto.test_accuracy.median - off.test_accuracy.median),
    )


def speed_run(spec: JobSpec, dataset: Dataset, echo: Echo) -> SpeedRun:
    timed = run_timed(spec, lambda: dataset, echo)
    return SpeedRun(
        samples_per_second=steady_throughput(timed.points),
        test_accuracy=timed.result.test_accuracy,
        wall_seconds=timed.wall_seconds,
        epochs=timed.result.epochs_completed,
        threads=timed.threads,
        acceleration=timed.result.acceleration,
    )


def measure_time_to_target(
    workload: Workload,
    target: float,
    ours_epochs: int | None,
    baseline_epochs: int,
    repeats: int,
    echo: Echo,
    caches: Path,
    recipe: dict[str, Any] | None = None,
) -> TimeToTarget:
    """(b): wall time to `target` test accuracy, data loading and compilation included; the
    cold start's compile cache goes in a new folder under `caches`."""
    _, examples_cnn = NETWORKS["examples_cnn"]
    recipes = {
        "baseline": plain_spec(
            workload, examples_cnn, "off", epochs=baseline_epochs, target_accuracy=target
        ),
        "ours": default_recipe_spec(workload, target, ours_epochs, recipe),
    }
    runs: dict[str, list[TargetRun]] = {name: [] for name in recipes}
    for repeat in range(1, repeats + 1):
        for name, spec in recipes.items():
            echo(f"[time-to-target] {name}, target {target:.4f}, run {repeat}/{repeats}")
            starts_cold = name == "ours" and repeat == 1
            if starts_cold:
                start_cold(caches, echo)
            run = target_run(spec, workload, target, echo, fresh=starts_cold)
            reached = "reached" if run.reached else "did not reach"
            compiled = f", compiled step from: {run.compile_cache}" if run.compile_cache else ""
            echo(
                f"    {reached} the target: {run.epochs} epochs, test accuracy "
                f"{run.test_accuracy:.4f}, {run.wall_seconds:.1f} s, {run.threads} threads"
                f"{compiled}"
            )
            runs[name].append(run)
    baseline = RecipeSummary.of(
        f"pytorch/examples loop: CNN, Adam 1e-3, batch 64, off, <= {baseline_epochs} epochs",
        recipes["baseline"],
        runs["baseline"],
    )
    ours_spec, ours_runs = recipes["ours"], runs["ours"]
    overrides = f" with {json.dumps(recipe)}" if recipe else ""
    acceleration = ours_spec.acceleration
    mode = acceleration if isinstance(acceleration, str) else "custom acceleration"
    epochs = ours_spec.training.epochs
    label = f"taas {ours_spec.model.arch} recipe{overrides}: {mode}, <= {epochs} epochs"
    cold = warm = None
    if len(ours_runs) > 1 and any(run.compile_cache for run in ours_runs):
        cold = RecipeSummary.of(f"{label}, cold (1st run)", ours_spec, ours_runs[:1])
        warm = RecipeSummary.of(f"{label}, warm (later runs)", ours_spec, ours_runs[1:])
    return TimeToTarget(
        target,
        baseline,
        Comparison.against(baseline, RecipeSummary.of(label, ours_spec, ours_runs)),
        None if cold is None else Comparison.against(baseline, cold),
        None if warm is None else Comparison.against(baseline, warm),
    )


def start_cold(caches: Path, echo: Echo) -> None:
    """Forget what this process compiled and point Inductor at a new, empty cache folder (inside
    ``compile_caches_of_this_run``), so the next run compiles from scratch as a worker on a fresh
    machine would."""
    folder = tempfile.mkdtemp(prefix="cold-", dir=caches)
    os.environ[CACHE_DIR_ENV] = os.environ[CHOSEN_ENV] = folder
    forget_compiled()
    echo(f"    cold start: nothing compiled in this process, compile cache {folder} (empty)")


@contextlib.contextmanager
def compile_caches_of_this_run() -> Iterator[Path]:
    """A temporary folder for the cold starts' compile caches, removed at the end, and the
    compile cache settings (the operator's too: this is a measurement) put back."""
    saved = {name: os.environ.get(name) for name in (CACHE_DIR_ENV, CHOSEN_ENV)}
    with tempfile.TemporaryDirectory(prefix="taas-bench-compile-") as folder:
        try:
            yield Path(folder)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def target_run(
    spec: JobSpec, workload: Workload, target: float, echo: Echo, *, fresh: bool
) -> TargetRun:
    timed = run_timed(spec, workload.load, echo, fresh=fresh)
    result = timed.result
    return TargetRun(
        wall_seconds=timed.wall_seconds,
        epochs=result.epochs_completed,
        reached=result.test_accuracy >= target,
        stop_reason=result.stop_reason,
        test_accuracy=result.test_accuracy,
        threads=timed.threads,
        acceleration=result.acceleration,
    )


def target_speedup(baseline: RecipeSummary, ours: RecipeSummary) -> tuple[float | None, bool]:
    """(baseline / ours median wall time, whether that is only a lower bound).

    A baseline run that stopped short of the target would have taken longer to reach it, so the
    ratio is then a lower bound; if one of our runs stopped short, there is no ratio to claim.
    """
    if ours.reached < len(ours.runs):
        return None, False
    lower_bound = baseline.reached < len(baseline.runs)
    return baseline.wall_seconds.median / ours.wall_seconds.median, lower_bound


# --- the machine and the code version ------------------------------------------------------------


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


# --- the whole bench -----------------------------------------------------------------------------


def run_bench(options: BenchOptions, echo: Echo) -> BenchReport:
    """Everything the options ask for, measured now; echo() gets the progress lines."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    device = resolve_device(options.device)
    resolved = resolved_options(options, device)
    machine, commit = machine_info(), git_commit()
    echo(f"taas bench: commit {commit}, device {device}")
    echo(f"machine: {describe(machine)}")
    workload = Workload(options.dataset, options.dataset_options, device, options.data_dir)
    same_spec: list[SameSpecComparison] = []
    if options.only in (None, "same-spec"):
        same_spec = measure_same_spec(workload, options.epochs, options.repeats, echo)
    time_to_target: list[TimeToTarget] = []
    if options.only in (None, "time-to-target"):
        with compile_caches_of_this_run() as caches:
            time_to_target = [
                measure_time_to_target(
                    workload,
                    target,
                    options.target_epochs,
                    options.baseline_epochs,
                    resolved["repeats_target"],
                    echo,
                    caches,
                    options.recipe,
                )
                for target in resolved["targets"]
            ]
    return BenchReport(
        commit=commit,
        machine=machine,
        device=device,
        started_at=started_at,
        options=resolved,
        same_spec=same_spec,
        time_to_target=time_to_target,
    )


def resolved_options(options: BenchOptions, device: str) -> dict[str, Any]:
    """The options with every device-dependent default filled in, as recorded in the report."""
    values = dataclasses.asdict(options)
    values["device"] = device
    values["targets"] = list(options.targets or DEFAULT_TARGETS[device])
    if options.repeats_target is None:
        values["repeats_target"] = DEFAULT_REPEATS_TARGET[device]
    values["out"] = str(output_path(options, device))
    values["data_dir"] = None if options.data_dir is None else str(options.data_dir)
    return values


def output_path(options: BenchOptions, device: str) -> Path:
    return options.out or Path(f"bench-{device}.json")


# --- the report ----------------------------------------------------------------------------------


def describe(machine: Machine) -> str:
    cuda = machine.cuda_device or "none"
    return (
        f"{machine.cpu}, {machine.cores} cores ({machine.usable_cores} usable, "
        f"{machine.torch_threads} torch threads), torch {machine.torch}, CUDA device: {cuda}, "
        f"Python {machine.python}"
    )


def render_markdown(report: BenchReport) -> str:
    options = report.options
    lines = [
        f"## Trainer benchmark: {report.device}, commit {report.commit}",
        "",
        f"Machine: {describe(report.machine)}. Started {report.started_at}.",
    ]
    if report.same_spec:
        lines += ["", *same_spec_table(report.same_spec, options)]
    for result in report.time_to_target:
        lines += ["", *time_to_target_table(result, options)]
    return "\n".join(lines) + "\n"


def same_spec_table(comparisons: list[SameSpecComparison], options: dict[str, Any]) -> list[str]:
    lines = [
        f"### Same spec, acceleration off vs auto ({options['dataset']}, {options['epochs']} "
        f"epochs, Adam 1e-3, batch 64, {run_count(options['repeats'])} each)",
        "",
        "samples/s is each run's median over the epochs after the first; every cell is the median "
        "(min-max) over runs.",
        "",
        "| network | acceleration | samples/s | test accuracy | wall s | auto/off | acc. diff |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for comparison in comparisons:
        for summary in (comparison.off, comparison.auto):
            ratio, delta = "", ""
            if summary is comparison.auto:
                ratio = f"**{comparison.speedup:.2f}x**"
                delta = f"{comparison.accuracy_delta_points:+.2f} pts"
            lines.append(
                f"| {comparison.label} | {summary.acceleration} "
                f"| {summary.samples_per_second.show(',.0f')} "
                f"| {summary.test_accuracy.show('.4f')} | {summary.wall_seconds.show('.1f')} "
                f"| {ratio} | {delta} |"
            )
    return lines


def time_to_target_table(result: TimeToTarget, options: dict[str, Any]) -> list[str]:
    lines = [
        f"### Time to {100 * result.target:.1f}% test accuracy ({options['dataset']}, "
        f"{run_count(options['repeats_target'])} each)",
        "",
        "Wall time from before loading the dataset to the end of training, compilation included.",
        "",
        "| recipe | reached | epochs | test accuracy | wall s | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
        recipe_row(result.baseline, ""),
    ]
    for comparison in (result.ours, result.cold, result.warm):
        if comparison is not None:
            lines.append(recipe_row(comparison.summary, speedup_text(comparison)))
    return lines


def recipe_row(summary: RecipeSummary, speedup: str) -> str:
    return (
        f"| {summary.recipe} | {summary.reached}/{len(summary.runs)} "
        f"| {summary.epochs.show('g')} | {summary.test_accuracy.show('.4f')} "
        f"| {summary.wall_seconds.show('.1f')} | {speedup} |"
    )


def run_count(count: int) -> str:
    return "1 run" if count == 1 else f"{count} runs"


def speedup_text(comparison: Comparison) -> str:
    if comparison.speedup is None:
        return "n/a (target not reached)"
    bound = ">= " if comparison.speedup_is_lower_bound else ""
    return f"**{bound}{comparison.speedup:.2f}x**"


def write_json(report: BenchReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")


# --- command line --------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def accuracies(text: str) -> tuple[float, ...]:
    """ "0.93,0.94": one or more accuracies in (0, 1]."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected accuracies such as 0.93,0.94, got {text}"
        ) from None
    if not all(0.0 < value <= 1.0 for value in values):
        raise argparse.ArgumentTypeError(f"expected accuracies in (0, 1], got {text}")
    return values


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def parse_options(argv: Sequence[str] | None, prog: str) -> BenchOptions:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure the accelerated trainer against the plain PyTorch loop on this "
        "machine: same-spec throughput and time to a target accuracy. Progress goes to stderr, "
        "the markdown report to stdout, every number to a JSON file.",
    )
    add = parser.add_argument
    add("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: auto")
    add("--repeats", type=positive_int, default=3, help="runs per (network, mode); default 3")
    add("--repeats-target", type=positive_int, help="runs per recipe; default 3 on cuda, 1 on cpu")
    add("--epochs", type=int, default=3, help="epochs per same-spec run (>= 2); default 3")
    add(
        "--target",
        dest="targets",
        type=accuracies,
        help="target test accuracies, comma-separated; default 0.93,0.94 on cuda, 0.91 on cpu",
    )
    add(
        "--target-epochs",
        type=positive_int,
        help="epoch budget of our recipe; default: the recipe's own (the spec's defaults)",
    )
    add(
        "--baseline-epochs",
        type=positive_int,
        default=BASELINE_MAX_EPOCHS,
        help=f"epoch budget of the examples loop; default {BASELINE_MAX_EPOCHS}",
    )
    add("--only", choices=["same-spec", "time-to-target"], help="run one part only")
    add("--out", type=Path, help="JSON file; default bench-<device>.json")
    add(
        "--data-dir",
        type=Path,
        default=os.environ.get("TAAS_DATA_DIR") or None,
        help="torchvision data folder; default $TAAS_DATA_DIR",
    )
    add(
        "--dataset",
        choices=["fashion_mnist", "mnist", "synthetic"],
        default="fashion_mnist",
        help="default fashion_mnist (synthetic: a quick smoke run)",
    )
    add(
        "--recipe",
        type=json_object,
        default={},
        help='spec fields over our defaults in (b), e.g. \'{"model": {"arch": "resnet"}}\'',
    )
    args = parser.parse_args(argv)
    if args.epochs < 2 and args.only != "time-to-target":
        parser.error("--epochs must be at least 2: samples/s leaves out the first epoch")
    return BenchOptions(**vars(args))


def echo_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m taas.worker.trainer.bench"
) -> int:
    options = parse_options(argv, prog)
    try:
        report = run_bench(options, echo_progress)
    except (BenchError, DatasetUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = Path(report.options["out"])
    write_json(report, path)
    print(render_markdown(report), end="", flush=True)
    echo_progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
