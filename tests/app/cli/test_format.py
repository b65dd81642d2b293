"""`taas status` and `taas jobs` as a person reads them: times, progress, epochs, files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from taas.app.cli.format import duration, job_summary, job_table, size

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def a_job(**changes: Any) -> dict[str, Any]:
    job = {
        "id": "job_" + "c" * 24,
        "name": "fashion-cnn",
        "status": "succeeded",
        "attempt": 2,
        "created_at": "2026-11-30T11:00:00Z",
        "started_at": "2026-11-30T11:00:04.5Z",
        "finished_at": "2026-11-30T11:03:09.5Z",
        "progress": {"epoch": 2, "epochs": 2, "fraction": 1.0},
        "metrics": {"latest": None, "test_accuracy": 0.9123, "test_loss": 0.25},
        "error": None,
        "device": "cuda:0 (NVIDIA H200)",
        "parameter_count": 421642,
        "stop_reason": "completed",
        "spec": {
            "dataset": "fashion_mnist",
            "model": {"arch": "cnn"},
            "training": {
                "epochs": 2,
                "batch_size": 256,
                "optimizer": "adamw",
                "lr": 0.01,
                "lr_schedule": "onecycle",
            },
        },
    }
    return {**job, **changes}


POINTS = [
    {"epoch": 1, "train_loss": 0.61, "train_accuracy": 0.78, "val_loss": 0.41,
     "val_accuracy": 0.85, "lr": 0.008, "epoch_seconds": 92.5, "samples_per_second": 583.8},
    {"epoch": 2, "train_loss": 0.33, "train_accuracy": 0.88, "val_loss": 0.27,
     "val_accuracy": 0.9123, "lr": None, "epoch_seconds": 91.0, "samples_per_second": 593.4},
]  # fmt: skip
ARTIFACTS = [
    {"name": "model.safetensors", "kind": "model", "size_bytes": 1_686_568},
    {"name": "model.json", "kind": "metadata", "size_bytes": 2_512},
]


def test_durations_and_sizes_read_at_a_glance() -> None:
    assert [duration(s) for s in (4.52, 185, 7620, None)] == ["4.5s", "3m05s", "2h07m", "-"]
    # Binary units, as the dashboard shows them (format.js): one reader never sees both.
    assert [size(n) for n in (512, 2_512, 1_686_568)] == ["512 B", "2.5 KiB", "1.6 MiB"]


def test_status_summary_says_what_happened_to_the_job() -> None:
    text = "\n".join(job_summary(a_job(), POINTS, ARTIFACTS, now=NOW))

    for expected in (
        f"job       {'job_' + 'c' * 24}  fashion-cnn",
        "status    succeeded (attempt 2), stopped: completed",
        "progress  2/2 epochs done (100%)",
        "queued    4.5s",
        "ran       3m05s",
        "device    cuda:0 (NVIDIA H200)",
        "model     cnn on fashion_mnist, 421,642 weights",
        "training  2 epochs, batch 256, adamw lr 0.01, onecycle schedule",
        "test      accuracy 0.9123, loss 0.2500",
    ):
        assert expected in text, expected
    assert "error" not in text


def test_status_summary_has_a_row_per_epoch_and_each_file_with_its_size() -> None:
    lines = job_summary(a_job(), POINTS, ARTIFACTS, now=NOW)

    header = next(i for i, line in enumerate(lines) if line.startswith("EPOCH"))
    assert lines[header].split() == [
        "EPOCH", "TRAIN", "LOSS", "TRAIN", "ACC", "VAL", "LOSS", "VAL", "ACC", "LR", "SECONDS",
        "SAMPLES/S",
    ]  # fmt: skip
    assert lines[header + 1].split() == [
        "1", "0.6100", "0.7800", "0.4100", "0.8500", "0.008000", "92.5", "584",
    ]  # fmt: skip
    assert lines[header + 2].split()[-3:] == ["-", "91.0", "593"]
    assert lines[-2].split() == ["model.safetensors", "1.6", "MiB", "model"]
    assert lines[-1].split() == ["model.json", "2.5", "KiB", "metadata"]


def test_a_failed_job_shows_its_error_and_a_running_one_its_time_so_far() -> None:
    failed = a_job(
        status="failed",
        error={"type": "user_error", "message": "the network does not fit"},
        metrics={"latest": None, "test_accuracy": None, "test_loss": None},
    )
    assert "error     user_error: the network does not fit" in job_summary(failed, [], [], NOW)

    live = {"batches_done": 30, "batches_per_epoch": 94, "samples_per_second": 2999.4}
    running = a_job(
        status="running",
        started_at="2026-11-30T11:00:05Z",
        finished_at=None,
        progress={"epoch": 1, "epochs": 2, "fraction": 0.66, **live, "eta_seconds": 12.0},
    )
    lines = job_summary(running, [], [], NOW)
    assert "ran       59m55s so far" in lines
    assert "progress  epoch 2/2 (66%), batch 30/94, 2,999 samples/s, eta 12.0s" in lines


def test_job_table_shows_waiting_and_running_time_and_accuracy() -> None:
    queued = a_job(
        id="job_" + "d" * 24,
        status="queued",
        started_at=None,
        finished_at=None,
        progress={"epoch": 0, "epochs": 2, "fraction": 0.0},
        metrics={"latest": None, "test_accuracy": None, "test_loss": None},
    )
    lines = job_table([a_job(), queued], now=NOW)

    assert lines[0].split() == ["ID", "STATUS", "NAME", "PROGRESS", "QUEUED", "RAN", "ACCURACY"]
    assert lines[1].split()[1:] == [
        "succeeded", "fashion-cnn", "2/2", "epochs", "done", "(100%)", "4.5s", "3m05s", "0.9123",
    ]  # fmt: skip
    assert lines[2].split()[1:] == [
        "queued", "fashion-cnn", "0/2", "epochs", "done", "(0%)", "1h00m", "-", "-",
    ]  # fmt: skip


def test_a_queued_job_says_what_it_waits_for() -> None:
    waiting = "a worker on the gpu queue: none is running now; it starts when one is"
    job = a_job(status="queued", started_at=None, finished_at=None, waiting_for=waiting)
    lines = job_summary(job, [], [], now=NOW)
    assert lines[2] == f"waiting   for {waiting}"
