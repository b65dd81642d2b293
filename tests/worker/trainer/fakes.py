"""Small helpers for the trainer tests: a tiny synthetic job and a context that records."""

from __future__ import annotations

import io
from typing import Any

import torch

from taas.app.spec import JobSpec
from taas.worker.trainer.run import MetricPoint
from taas.worker.trainer.series import StepPoint

# 256 training images of 1x12x12 in 4 classes: an epoch of batch 32 is 8 steps, milliseconds each.
TINY_OPTIONS: dict[str, Any] = {
    "num_classes": 4,
    "shape": [1, 12, 12],
    "train_size": 256,
    "test_size": 128,
    "noise": 0.6,
    "seed": 3,
}
TINY_BATCHES_PER_EPOCH = 8


def tiny_spec(
    model: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    acceleration: str | dict[str, Any] = "auto",
    **training: Any,
) -> JobSpec:
    """A synthetic job on TINY_OPTIONS (overridden by `options`), batch 32, 2 epochs, on CPU."""
    return JobSpec.model_validate(
        {
            "dataset": "synthetic",
            "dataset_options": {**TINY_OPTIONS, **(options or {})},
            "model": model or {"arch": "mlp", "hidden_sizes": [32]},
            "training": {"epochs": 2, "batch_size": 32, "lr": 0.01, **training},
            "device": "cpu",
            "acceleration": acceleration,
        }
    )


class RecordingContext:
    """A TrainContext that records what the trainer reports; stops after `stop_after` checks
    (as a preemption, which checkpoints where it stopped, when `preempted`)."""

    def __init__(
        self, stop_after: int | None = None, preempted: bool = False, prune_after: int | None = None
    ) -> None:
        self.stop_after = stop_after
        self.prune_after = prune_after  # prune (a sweep's early stop) after this many checks
        self.preempted = preempted  # the stop is a preemption: checkpoint where it stopped
        self.stop_checks = 0
        self.points: list[MetricPoint] = []
        self.steps: list[StepPoint] = []
        self.progress: list[tuple[int, int, int, int]] = []
        self.messages: list[str] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.resume_from: dict[str, Any] | None = None
        self.started: tuple[str, dict[str, object]] | None = None

    def report_metrics(self, point: MetricPoint) -> None:
        self.points.append(point)

    def report_progress(self, epoch: int, batches_done: int, batches: int, samples: int) -> None:
        self.progress.append((epoch, batches_done, batches, samples))

    def report_step(self, point: StepPoint) -> None:
        self.steps.append(point)

    def report_start(self, device: str, acceleration: dict[str, object]) -> None:
        self.started = (device, acceleration)

    def should_stop(self) -> bool:
        self.stop_checks += 1
        return self.stop_after is not None and self.stop_checks >= self.stop_after

    def should_prune(self) -> bool:
        return self.prune_after is not None and self.stop_checks >= self.prune_after

    def checkpoint_on_stop(self) -> bool:
        return self.preempted

    def log(self, message: str) -> None:
        self.messages.append(message)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        # Serialized now, as the worker does: the live tensors keep changing after this call,
        # and loading with weights_only proves the state holds no arbitrary objects.
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        self.checkpoints.append(torch.load(buffer, weights_only=True))

    def load_checkpoint(self) -> dict[str, Any] | None:
        return self.resume_from
