"""The step-granularity series: the training loss every few steps and every evaluation.

The losses stay on the device until about once a second, when they are read all at once: one
host sync per second instead of one per step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

# At most about this many training-loss points per run: a long run averages more steps per point.
TRAIN_POINTS_PER_RUN = 500
# How long losses may wait on the device before they are read and reported.
FLUSH_SECONDS = 1.0


@dataclass
class StepPoint:
    kind: Literal["train", "eval"]
    step: int  # global optimizer step, 1-based
    epoch: float  # fractional: 1.5 is half way through the second epoch
    train_loss: float | None = None  # mean over the steps since the previous train point
    lr: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None

    def to_json(self) -> dict[str, float | int | str | None]:
        return dataclasses.asdict(self)


class StepSeries:
    """Gathers a run's step points and hands them to ``report`` in step order."""

    def __init__(self, total_steps: int, report: Callable[[StepPoint], None]) -> None:
        self.every = max(1, math.ceil(total_steps / TRAIN_POINTS_PER_RUN))
        self.report = report
        self.loss_sum: torch.Tensor | None = None  # () float32 on the device
        self.steps_summed = 0
        # Train points whose mean loss is still on the device: (step, epoch, lr, loss).
        self.unread: list[tuple[int, float, float, torch.Tensor]] = []
        self.read_at = time.monotonic()

    def add_train_step(self, step: int, epoch: float, lr: float, loss: torch.Tensor) -> None:
        """After each optimizer step; ``loss`` is that step's mean loss, on the device."""
        loss = loss.detach().float()
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.steps_summed += 1
        if step % self.every == 0:
            self.unread.append((step, epoch, lr, self.loss_sum / self.steps_summed))
            self.loss_sum, self.steps_summed = None, 0
        if self.unread and time.monotonic() - self.read_at >= FLUSH_SECONDS:
            self.flush()

    def add_evaluation(self, step: int, epoch: float, loss: float, accuracy: float) -> None:
        self.flush()  # the train points before it go first
        self.report(StepPoint("eval", step, epoch, val_loss=loss, val_accuracy=accuracy))

    def flush(self) -> None:
        """Read the waiting losses from the device (a host sync) and report them."""
        self.read_at = time.monotonic()
        if not self.unread:
            return
        losses = torch.stack([loss for *_, loss in self.unread]).tolist()
        for (step, epoch, lr, _), loss in zip(self.unread, losses, strict=True):
            self.report(StepPoint("train", step, epoch, train_loss=loss, lr=lr))
        self.unread = []
