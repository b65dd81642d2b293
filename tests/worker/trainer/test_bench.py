"""The bench on a tiny synthetic dataset: every part runs, and every ratio is its own numbers'."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from taas.app.cli.main import cli
from taas.worker.trainer.bench import (
    BenchError,
    BenchOptions,
    BenchReport,
    main,
    parse_options,
    render_markdown,
    run_bench,
    write_json,
)
from taas.worker.trainer.bench.report import time_to_target_table
from taas.worker.trainer.bench.results import RecipeSummary, TargetRun, target_speedup
from taas.worker.trainer.bench.run import resolved_options
from taas.worker.trainer.bench.timing import steady_throughput
from taas.worker.trainer.bench.workload import NETWORKS, Workload, default_recipe_spec
from taas.worker.trainer.run import MetricPoint
from tests.worker.trainer.fakes import TINY_OPTIONS

# Low enough that every run reaches it after its first epoch (4 classes: chance is 0.25), so the
# time-to-target ratio always exists.
EASY_TARGET = 0.01


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchReport, list[str]]:
    options = BenchOptions(
        device="cpu",
        repeats=2,
        repeats_target=1,
        epochs=2,
        targets=(EASY_TARGET,),
        target_epochs=2,
        baseline_epochs=2,
        out=tmp_path_factory.mktemp("bench") / "bench.json",
        dataset="synthetic",
        dataset_options=TINY_OPTIONS,
    )
    progress: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        # No git in the test; run_bench looks git_commit up in its own module.
        patch.setattr("taas.worker.trainer.bench.run.git_commit", lambda: "abc1234")
        return run_bench(options, progress.append), progress


def test_same_spec_ratios_are_the_measured_medians_divided(
    report: tuple[BenchReport, list[str]],
) -> None:
    result, _ = report

    assert [comparison.network for comparison in result.same_spec] == list(NETWORKS)
    for comparison in result.same_spec:
        off, auto = comparison.off, comparison.auto
        assert (off.acceleration, auto.acceleration) == ("off", "auto")
        assert len(off.runs) == len(auto.runs) == 2
        for summary in (off, auto):
            medians = [run.samples_per_second.median for run in summary.runs]
            assert summary.samples_per_second.median == statistics.median(medians)
            assert summary.samples_per_second.low == min(medians) > 0
            assert all(run.epochs == 2 and run.wall_seconds > 0 for run in summary.runs)
            assert all(run.threads is not None and run.threads >= 1 for run in summary.runs)
        assert comparison.speedup == auto.samples_per_second.median / off.samples_per_second.median
        accuracy_gap = auto.test_accuracy.median - off.test_accuracy.median
        assert comparison.accuracy_delta_points == pytest.approx(100 * accuracy_gap)
        assert comparison.spec["acceleration"] == "off"
        assert comparison.spec["training"]["batch_size"] == 64


def test_time_to_target_ratio_is_the_measured_wall_times_divided(
    report: tuple[BenchReport, list[str]],
) -> None:
    result, _ = report
    (outcome,) = result.time_to_target

    assert outcome.target == EASY_TARGET
    assert outcome.baseline.spec["acceleration"] == "off"
    assert outcome.baseline.spec["model"]["padding"] == "valid"
    ours = outcome.ours.summary
    assert ours.spec["acceleration"] == "auto"
    assert ours.spec["training"]["target_accuracy"] == EASY_TARGET
    for summary in (outcome.baseline, ours):
        assert summary.reached == len(summary.runs) == 1
        run = summary.runs[0]
        assert run.reached
        assert run.test_accuracy >= EASY_TARGET
        assert summary.wall_seconds.median == run.wall_seconds > 0
    expected = outcome.baseline.wall_seconds.median / ours.wall_seconds.median
    assert outcome.ours.speedup == expected
    assert not outcome.ours.speedup_is_lower_bound
    # Nothing compiled on this CPU ("auto" compiles on CUDA): no cold and warm rows.
    assert ours.runs[0].compile_cache is None
    assert outcome.cold is outcome.warm is None


def test_json_holds_the_report_with_machine_and_commit(
    report: tuple[BenchReport, list[str]], tmp_path: Path
) -> None:
    result, _ = report
    path = tmp_path / "bench.json"
    write_json(result, path)
    data = json.loads(path.read_text())

    assert data["commit"] == "abc1234"
    assert data["device"] == "cpu"
    assert data["machine"]["torch"] == torch.__version__
    assert data["machine"]["cores"] >= 1
    assert data["options"]["targets"] == [EASY_TARGET]
    assert data["options"]["repeats"] == 2
    first = data["same_spec"][0]
    assert first["speedup"] == result.same_spec[0].speedup
    assert len(first["off"]["runs"]) == 2
    assert set(first["off"]["samples_per_second"]) == {"median", "low", "high"}
    assert data["time_to_target"][0]["ours"]["speedup"] == result.time_to_target[0].ours.speedup


def test_markdown_tables_show_the_measured_ratios(report: tuple[BenchReport, list[str]]) -> None:
    result, progress = report
    text = render_markdown(result)

    assert "commit abc1234" in text.splitlines()[0]
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2 * len(NETWORKS) + 2 + 2  # two tables: header, rule, rows
    assert all(row.count("|") == rows[0].count("|") for row in rows[:6])
    assert all(row.count("|") == rows[6].count("|") for row in rows[6:])
    for comparison in result.same_spec:
        assert f"**{comparison.speedup:.2f}x**" in text
        assert comparison.label in text
    assert f"**{result.time_to_target[0].ours.speedup:.2f}x**" in text
    assert progress[0] == "taas bench: commit abc1234, device cpu"
    assert any("epoch 2:" in line for line in progress)


def point(epoch: int, samples_per_second: float) -> MetricPoint:
    return MetricPoint(epoch, 1.0, 0.5, 1.0, 0.5, 1e-3, 1.0, samples_per_second)


def test_throughput_leaves_out_the_first_epoch() -> None:
    spread = steady_throughput([point(1, 10.0), point(2, 300.0), point(3, 100.0), point(4, 200.0)])

    assert (spread.median, spread.low, spread.high) == (200.0, 100.0, 300.0)
    with pytest.raises(BenchError, match="2 epochs"):
        steady_throughput([point(1, 10.0)])


def summary_of(*reached: bool) -> RecipeSummary:
    """Runs that took 10 s, 20 s, ... and reached the target or not."""
    runs = [
        TargetRun(
            wall_seconds=10.0 * (index + 1),
            epochs=3,
            reached=hit,
            stop_reason="target_reached" if hit else "completed",
            test_accuracy=0.9,
            threads=1,
            acceleration={},
        )
        for index, hit in enumerate(reached)
    ]
    spec = Workload("synthetic", None, "cpu", None).job()
    return RecipeSummary.of("recipe", spec, runs)


def test_time_to_target_ratio_is_withheld_or_bounded_when_a_run_falls_short() -> None:
    both = target_speedup(summary_of(True, True), summary_of(True))
    assert both == (summary_of(True, True).wall_seconds.median / 10.0, False)
    # Our recipe fell short: there is no speed-up to claim.
    assert target_speedup(summary_of(True), summary_of(True, False)) == (None, False)
    # The baseline fell short: it would have needed longer, so the ratio is a lower bound.
    assert target_speedup(summary_of(False), summary_of(True)) == (1.0, True)


def test_options_default_per_device() -> None:
    options = parse_options([], prog="bench")

    cpu, cuda = resolved_options(options, "cpu"), resolved_options(options, "cuda")
    assert (cpu["targets"], cpu["repeats_target"], cpu["out"]) == ([0.91], 1, "bench-cpu.json")
    assert (cuda["targets"], cuda["repeats_target"]) == ([0.93, 0.94], 3)
    assert cuda["out"] == "bench-cuda.json"
    assert (options.repeats, options.epochs, options.dataset) == (3, 3, "fashion_mnist")
    assert options.target_epochs is None  # the recipe's own
    explicit = parse_options(["--target", "0.8,0.85", "--repeats-target", "2"], prog="bench")
    assert resolved_options(explicit, "cuda")["targets"] == [0.8, 0.85]
    for wrong in (["--target", "0.9,x"], ["--target", "1.5"], ["--epochs", "1"]):
        with pytest.raises(SystemExit):  # --epochs 1: the first is left out of samples/s
            parse_options(wrong, prog="bench")


def test_the_device_picks_our_recipe() -> None:
    cpu = default_recipe_spec(Workload("fashion_mnist", None, "cpu", None), 0.9, None)
    cuda = default_recipe_spec(Workload("fashion_mnist", None, "cuda", None), 0.9, 4)
    assert (cpu.model.arch, cpu.training.epochs) == ("cnn", 3)
    assert (cuda.model.arch, cuda.training.epochs, cuda.training.batch_size) == ("resnet", 4, 256)
    assert cuda.training.target_accuracy == 0.9


@pytest.mark.slow
def test_a_compiled_recipe_is_measured_cold_then_warm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A temporary folder of this test's own: other test processes run benches at the same time.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    options = BenchOptions(
        device="cpu",
        only="time-to-target",
        repeats_target=2,
        targets=(EASY_TARGET,),
        target_epochs=1,
        baseline_epochs=1,
        out=tmp_path / "bench.json",
        dataset="synthetic",
        dataset_options=TINY_OPTIONS,
        recipe={"model": {"arch": "mlp", "hidden_sizes": [8]}, "acceleration": {"compile": True}},
    )
    progress: list[str] = []
    cache_setting = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    (outcome,) = run_bench(options, progress.append).time_to_target
    # The cold start's cache folder is gone, and the process's setting is back.
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == cache_setting
    assert not list(private_tmp.glob("taas-bench-compile-*"))

    runs = outcome.ours.summary.runs
    # The first run compiled from scratch into an empty cache; the second reused it in memory.
    assert [run.compile_cache for run in runs] == ["none", "memory"]
    assert outcome.cold is not None
    assert outcome.warm is not None
    assert outcome.cold.summary.runs == runs[:1]
    assert outcome.warm.summary.runs == runs[1:]
    assert outcome.warm.speedup == outcome.baseline.wall_seconds.median / runs[1].wall_seconds
    assert sum("cold start" in line for line in progress) == 1
    resolved = resolved_options(options, "cpu")
    table = "\n".join(time_to_target_table(outcome, resolved))
    assert "custom acceleration, <= 1 epochs, cold (1st run) | 1/1 |" in table
    assert "epochs, warm (later runs) | 1/1 |" in table
    assert f"**{outcome.warm.speedup:.2f}x**" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without")
def test_cuda_without_a_gpu_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--device", "cuda", "--dataset", "synthetic"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_taas_bench_forwards_its_options() -> None:
    outcome = CliRunner().invoke(cli, ["bench", "--help"])

    assert outcome.exit_code == 0
    assert "taas bench" in outcome.output
    for option in ("--repeats-target", "--only", "--out", "--data-dir", "--target"):
        assert option in outcome.output
