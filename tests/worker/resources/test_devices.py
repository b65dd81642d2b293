"""`taas worker --gpus`: each pool process sees only its own GPU."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from taas.app.cli.main import cli
from taas.app.cli.service import processes_for_gpus
from taas.worker.resources import devices


def test_gpu_lists_are_checked() -> None:
    assert devices.parse_gpus("0, 1,3") == ["0", "1", "3"]
    with pytest.raises(ValueError, match="not 'x'"):
        devices.parse_gpus("0,x")
    with pytest.raises(ValueError, match="listed twice"):
        devices.parse_gpus("1,1")


def test_each_process_is_pinned_to_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(devices.GPUS_ENV, "2,5")
    # Recorded by setenv, so the value pin_gpu writes is undone after the test.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5")
    monkeypatch.setattr(devices, "_pinned", None)

    assert devices.pin_gpu(1) == "5"

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert devices.device_label() == "/gpu5"


def test_without_a_gpu_list_nothing_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(devices.GPUS_ENV, raising=False)
    monkeypatch.setattr(devices, "_pinned", None)

    assert devices.pin_gpu(0) is None
    assert devices.device_label() == ""


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--gpus", "0,0"], "listed twice"),
        (["--gpus", "a"], "GPU ids are numbers"),
        (["--gpus", "0,1", "--concurrency", "3"], "3 processes for 2 GPUs"),
    ],
)
def test_the_worker_refuses_a_bad_gpu_list_before_starting(
    arguments: list[str], problem: str
) -> None:
    result = CliRunner().invoke(cli, ["worker", *arguments])

    assert result.exit_code == 2
    assert problem in result.output


def test_with_several_jobs_per_gpu_consecutive_processes_share_a_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(devices.GPUS_ENV, "2,5")
    monkeypatch.setenv(devices.JOBS_PER_GPU_ENV, "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5")
    monkeypatch.setattr(devices, "_pinned", None)

    assert [devices.pin_gpu(index) for index in range(6)] == ["2", "2", "2", "5", "5", "5"]


def test_the_worker_runs_jobs_per_gpu_processes_for_each_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(devices.GPUS_ENV, "")  # recorded, so the values written are undone
    monkeypatch.setenv(devices.JOBS_PER_GPU_ENV, "")

    assert processes_for_gpus("0,1", concurrency=1, jobs_per_gpu=4) == 8

    assert os.environ[devices.GPUS_ENV] == "0,1"
    assert devices.jobs_per_gpu() == 4


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--jobs-per-gpu", "2"], "needs --gpus"),
        (["--gpus", "0,1", "--jobs-per-gpu", "2", "--concurrency", "3"], "leave --concurrency out"),
        (["--gpus", "0", "--jobs-per-gpu", "0"], "--jobs-per-gpu"),
    ],
)
def test_the_worker_refuses_bad_jobs_per_gpu(arguments: list[str], problem: str) -> None:
    result = CliRunner().invoke(cli, ["worker", *arguments])

    assert result.exit_code == 2
    assert problem in result.output
