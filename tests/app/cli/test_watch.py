"""`taas watch` output: plain lines for pipes and files, a live bar for terminals."""

from __future__ import annotations

import io
import re

from rich.console import Console

from taas.app.cli.job_feed import JobEvent
from taas.app.cli.watch import PROGRESS_LINE_SECONDS, LiveView, PlainView, watch

JOB = "job_" + "b" * 24
ANSI = re.compile(r"\x1b\[")


def progress(epoch: int, fraction: float, speed: float | None = 1200.0) -> JobEvent:
    data = {"job_id": JOB, "epoch": epoch, "epochs": 2, "fraction": fraction}
    return JobEvent("progress", {**data, "samples_per_second": speed, "eta_seconds": 42.0})


A_JOB = [
    JobEvent("status", {"job_id": JOB, "status": "queued", "attempt": 0, "message": ""}),
    JobEvent("status", {"job_id": JOB, "status": "running", "attempt": 1, "message": "on cpu"}),
    JobEvent("log", {"job_id": JOB, "attempt": 1, "message": "training a cnn"}),
    progress(0, 0.1),
    JobEvent(
        "metric",
        {"job_id": JOB, "granularity": "step", "kind": "train", "step": 3, "train_loss": 1.5},
    ),
    progress(0, 0.2),
    progress(0, 0.3),
    JobEvent(
        "metric",
        {"job_id": JOB, "granularity": "step", "kind": "eval", "epoch": 0.5, "val_accuracy": 0.7},
    ),
    progress(1, 0.5),
    JobEvent(
        "metric",
        {"job_id": JOB, "granularity": "epoch", "epoch": 1, "train_loss": 0.9, "val_accuracy": 0.8},
    ),
    progress(2, 1.0),
    JobEvent(
        "end",
        {"job_id": JOB, "status": "failed", "test_accuracy": None, "test_loss": None,
         "error": {"type": "user_error", "message": "out of memory"}},
    ),
]  # fmt: skip


def plain_output(events: list[JobEvent], seconds_between: float = 0.1) -> list[str]:
    out, now = io.StringIO(), [0.0]

    def clock() -> float:
        now[0] += seconds_between
        return now[0]

    end = watch(events, PlainView(out, clock=clock))
    assert end is not None
    assert end["status"] == "failed"
    return out.getvalue().splitlines()


def test_plain_output_is_lines_without_carriage_returns_or_colours() -> None:
    out = io.StringIO()
    watch(A_JOB, PlainView(out))

    text = out.getvalue()
    assert "\r" not in text
    assert not ANSI.search(text)
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in text.splitlines())


def test_plain_output_says_each_status_log_epoch_and_the_outcome() -> None:
    lines = [line[9:] for line in plain_output(A_JOB)]  # without the time

    assert lines[0] == "queued"
    assert lines[1] == "running (attempt 1): on cpu"
    assert lines[2] == "log: training a cnn"
    assert "eval at epoch 0.50: val_loss - val_accuracy 0.7000" in lines
    assert "epoch 1/2 done: train_loss 0.9000 val_loss - val_accuracy 0.8000" in lines
    assert lines[-2:] == [f"{JOB} failed", "error (user_error): out of memory"]


def test_plain_progress_lines_come_once_per_epoch_and_every_few_seconds_within_one() -> None:
    quick = [line[9:] for line in plain_output(A_JOB) if "%" in line or "trained;" in line]
    # Three progress events in epoch 0 within a second: one line; epochs 1 and 2: one each.
    assert quick == [
        "epoch 1/2  10%  1,200 samples/s  eta 42.0s",  # the epoch it is in, not those done
        "epoch 2/2  50%  1,200 samples/s  eta 42.0s  loss 1.5000  val_acc 0.7000",
        # Every batch ran: no "100% eta 0s" while the test split is evaluated.
        "2 epochs trained; final evaluation on the test split  loss 0.9000  val_acc 0.8000",
    ]
    slow = plain_output(A_JOB, seconds_between=PROGRESS_LINE_SECONDS)
    assert sum("epoch 1/2  " in line for line in slow) == 3  # each one, when they are far apart
    # The final evaluation is said once, however long it takes.
    finishing = [*A_JOB[:-1], progress(2, 1.0), progress(2, 1.0), A_JOB[-1]]
    slow = plain_output(finishing, seconds_between=PROGRESS_LINE_SECONDS)
    assert sum("final evaluation" in line for line in slow) == 1


def test_live_view_draws_a_bar_and_prints_the_outcome() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)

    watch(A_JOB, LiveView(console, JOB))

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "━" in text  # the bar
    assert "epoch 2/2" in text
    assert "1,200 samples/s" in text
    assert "final evaluation" in text  # every batch ran: no eta left to show
    assert "eta" not in text.rsplit("final evaluation", 1)[1]
    assert "running (attempt 1): on cpu" in text
    assert f"{JOB} failed" in text
    assert "error (user_error): out of memory" in text
