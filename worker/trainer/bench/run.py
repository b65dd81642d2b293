"""The whole bench: everything the options ask for, measured now, as one report."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from taas.worker.trainer.bench.machine import describe, git_commit, machine_info, resolve_device
from taas.worker.trainer.bench.results import BenchReport, SameSpecComparison, TimeToTarget
from taas.worker.trainer.bench.same_spec import measure_same_spec
from taas.worker.trainer.bench.time_to_target import (
    compile_caches_of_this_run,
    measure_time_to_target,
)
from taas.worker.trainer.bench.workload import (
    DEFAULT_REPEATS_TARGET,
    DEFAULT_TARGETS,
    BenchOptions,
    Echo,
    Workload,
)


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
