"""The report: markdown (the machine, then a table per comparison) and the JSON of every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taas.worker.trainer.bench.machine import describe
from taas.worker.trainer.bench.results import (
    BenchReport,
    Comparison,
    RecipeSummary,
    SameSpecComparison,
    TimeToTarget,
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
