"""What the heartbeat tells the API between epochs: a smooth fraction, rates and an ETA, and the
step points, none lost when a report does not get through."""

from __future__ import annotations

import pytest

from taas.worker import progress as progress_module
from taas.worker.progress import POINTS_PER_REPORT, LiveProgress
from taas.worker.trainer.series import StepPoint


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    return clock


def test_fraction_rates_and_eta_follow_the_batches(clock: Clock) -> None:
    live = LiveProgress(epochs=4)
    assert live.report() == {"epoch": 0, "fraction": 0.0, "points": []}  # nothing ran yet

    live.batch_done(1, 10, 100, 640)
    live.report()
    clock.now += 2.0
    live.batch_done(1, 50, 100, 3200)  # 40 batches (2,560 samples) in 2 s
    report = live.report()
    assert report["fraction"] == pytest.approx(0.5 / 4)
    assert report["batches_done"] == 50
    assert report["samples_per_second"] == pytest.approx(1280.0)
    assert report["eta_seconds"] == pytest.approx(350 / 20.0)  # 350 batches left at 20 a second

    # An evaluation: no batch for a while; the rates stand, the fraction does not go back.
    clock.now += 5.0
    report = live.report()
    assert report["samples_per_second"] == pytest.approx(1280.0)

    live.epoch_completed(1)
    live.batch_done(2, 10, 100, 640)  # the samples count restarts with the epoch
    clock.now += 1.0
    report = live.report()
    assert report["epoch"] == 1
    assert report["fraction"] == pytest.approx(1.1 / 4)
    assert report["samples_per_second"] == pytest.approx(640.0)  # 640 samples in 1 s


def test_points_go_out_once_and_come_back_when_a_report_fails(clock: Clock) -> None:
    live = LiveProgress(epochs=1)
    for step in range(1, POINTS_PER_REPORT + 6):
        live.add_point(StepPoint("train", step, step / 1000, train_loss=float("nan"), lr=0.1))
    first = live.report()["points"]
    assert len(first) == POINTS_PER_REPORT  # the rest wait for the next report
    assert first[0]["train_loss"] is None  # a diverged loss is null, JSON has no NaN
    live.put_back(first)  # that report did not get through
    again = live.report()["points"]
    assert [point["step"] for point in again] == list(range(1, POINTS_PER_REPORT + 1))
    assert [point["step"] for point in live.report()["points"]] == list(
        range(POINTS_PER_REPORT + 1, POINTS_PER_REPORT + 6)
    )
