"""Live progress between epochs: where training is, how fast it goes, when it should end, and the
step points not yet sent. The training thread writes it after every batch; the heartbeat thread
takes a report about once a second and sends it with the lease renewal."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from taas.worker.trainer.series import StepPoint

# The API takes at most this many step points per heartbeat; the rest wait for the next one.
POINTS_PER_REPORT = 1000


class LiveProgress:
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.lock = threading.Lock()
        self.epochs_done = 0  # completed epochs (their metric point was reported)
        self.epoch = 0  # the epoch under way, 1-based; 0 before the first batch
        self.batches_done = 0
        self.batches_per_epoch: int | None = None
        self.samples_before_epoch = 0  # samples of the epochs finished in this attempt
        self.samples_in_epoch = 0
        self.points: list[dict[str, Any]] = []
        # The previous report's reading, for the rates: (monotonic time, batches, samples).
        self.last_reading: tuple[float, int, int] | None = None
        self.samples_per_second: float | None = None
        self.batches_per_second: float | None = None
        # Where training runs and how (device, acceleration plan), sent with every report once
        # known, so a reader sees them while the job runs.
        self.start: dict[str, Any] | None = None

    def epoch_completed(self, epoch: int) -> None:
        with self.lock:
            self.epochs_done = max(self.epochs_done, epoch)

    def batch_done(self, epoch: int, batches_done: int, batches: int, samples: int) -> None:
        with self.lock:
            if epoch != self.epoch:
                self.samples_before_epoch += self.samples_in_epoch
                self.epoch = epoch
            self.batches_done, self.batches_per_epoch = batches_done, batches
            self.samples_in_epoch = samples

    def add_point(self, point: StepPoint) -> None:
        values = {key: _finite_or_none(value) for key, value in point.to_json().items()}
        with self.lock:
            self.points.append(values)

    def has_points(self) -> bool:
        with self.lock:
            return bool(self.points)

    def put_back(self, points: list[dict[str, Any]]) -> None:
        """A report that did not get through: its points go out with the next one."""
        with self.lock:
            self.points[:0] = points

    def started(self, device: str, acceleration: dict[str, object]) -> None:
        with self.lock:
            self.start = {"device": device, "acceleration": acceleration}

    def report(self) -> dict[str, Any]:
        """The heartbeat's body: progress, rates, ETA and the points gathered since the last."""
        with self.lock:
            self._update_rates(time.monotonic())
            points, self.points = self.points[:POINTS_PER_REPORT], self.points[POINTS_PER_REPORT:]
            body: dict[str, Any] = {"epoch": self.epochs_done, "fraction": self._fraction()}
            if self.start is not None:
                body |= self.start
            if self.batches_per_epoch is not None:
                body |= {
                    "batches_done": self.batches_done,
                    "batches_per_epoch": self.batches_per_epoch,
                    "samples_per_second": self.samples_per_second,
                    "eta_seconds": self._eta_seconds(),
                }
            return body | {"points": points}

    def _fraction(self) -> float:
        if self.batches_per_epoch is None or self.epoch == 0:
            return min(self.epochs_done / self.epochs, 1.0)
        within = self.batches_done / self.batches_per_epoch
        return min(max(self.epoch - 1 + within, self.epochs_done) / self.epochs, 1.0)

    def _update_rates(self, now: float) -> None:
        """Rates over the time since the last report; kept while no batch ran (an evaluation)."""
        batches = (self.epoch - 1) * (self.batches_per_epoch or 0) + self.batches_done
        samples = self.samples_before_epoch + self.samples_in_epoch
        if self.last_reading is not None:
            then, batches_then, samples_then = self.last_reading
            elapsed = now - then
            if elapsed > 0 and batches > batches_then:
                self.batches_per_second = (batches - batches_then) / elapsed
                self.samples_per_second = (samples - samples_then) / elapsed
        self.last_reading = (now, batches, samples)

    def _eta_seconds(self) -> float | None:
        if not self.batches_per_second or self.batches_per_epoch is None:
            return None
        left = (self.epochs - self.epoch) * self.batches_per_epoch
        left += self.batches_per_epoch - self.batches_done
        return max(left, 0) / self.batches_per_second


def _finite_or_none(value: object) -> object:
    # JSON has no NaN or infinity: a diverged loss is reported as null.
    return None if isinstance(value, float) and not math.isfinite(value) else value
