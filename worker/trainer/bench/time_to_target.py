"""(b) Time to target: from nothing (dataset not loaded) to a test accuracy, the
pytorch/examples-style loop against our default recipe. Where our recipe compiles, its first
run starts cold (nothing compiled, an empty compile cache) and the later runs warm."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from taas.app.spec import JobSpec
from taas.worker.trainer.bench.results import Comparison, RecipeSummary, TargetRun, TimeToTarget
from taas.worker.trainer.bench.timing import run_timed
from taas.worker.trainer.bench.workload import (
    NETWORKS,
    Echo,
    Workload,
    default_recipe_spec,
    plain_spec,
)
from taas.worker.trainer.compiled import CACHE_DIR_ENV, CHOSEN_ENV, forget_compiled


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
