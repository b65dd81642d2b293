"""The plain training loop: eager fp32 PyTorch, readable top to bottom.

This is the honest baseline the accelerated trainer is measured against. It still keeps the whole
dataset on the device as uint8 and normalizes per batch (no DataLoader), and reads results back to
the host once per epoch, not once per batch.

The trainer reaches the platform only through a TrainContext (report metrics, log, should_stop), so
it runs the same under Celery, in a benchmark script and in tests.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional name)
from torch import nn
from torch.optim import lr_scheduler

from app.spec import AccelerationSpec, JobSpec, TrainingSpec
from worker.trainer.data import Dataset, Preprocess, preprocess_for
from worker.trainer.networks import build_network

# Fixed so that evaluating saved weights later reproduces the reported test metrics exactly:
# the batch size changes the order of the float sums.
EVAL_BATCH_SIZE = 1000

StopReason = Literal["completed", "cancelled", "target_reached", "max_seconds"]

_log = logging.getLogger(__name__)


class TrainContext(Protocol):
    def report_metrics(self, point: MetricPoint) -> None:
        """Called once per completed epoch."""

    def should_stop(self) -> bool:
        """Called before every batch: True stops training (cancelled) within one batch."""

    def log(self, message: str) -> None:
        """A line for the job's event log."""


@dataclass
class MetricPoint:
    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's batches, with label smoothing, in train mode
    train_accuracy: float
    val_loss: float | None  # on the test split for now, without label smoothing
    val_accuracy: float | None
    lr: float  # the learning rate of the epoch's last step
    epoch_seconds: float  # the training pass only, not the evaluation
    samples_per_second: float

    def to_json(self) -> dict[str, float | int | None]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    model: nn.Module  # on CPU, in eval mode
    preprocess: Preprocess
    test_accuracy: float  # evaluate() of `model` on CPU: reproducible from the saved weights
    test_loss: float
    epochs_completed: int
    stop_reason: StopReason
    parameter_count: int
    device: str  # where it trained
    acceleration: dict[str, object]  # what was applied and what was skipped, and why


@dataclass
class _EpochOutcome:
    loss: float
    accuracy: float
    seconds: float
    lr: float
    stopped: StopReason | None  # set when the epoch was cut short


@dataclass
class _Run:
    """Everything one epoch needs, built once by train()."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: lr_scheduler.LRScheduler
    preprocess: Preprocess
    train_x: torch.Tensor  # (N, C, H, W) uint8 on device
    train_y: torch.Tensor  # (N,) int64 on device
    batches: list[tuple[int, int]]  # (start, end) into the epoch's shuffled order
    order_generator: torch.Generator  # CPU generator: same order on every device
    label_smoothing: float
    context: TrainContext
    deadline: float | None  # time.monotonic() past which training stops


def pick_device(requested: str, log: Callable[[str], None] = _log.warning) -> torch.device:
    """'auto' -> cuda if there is one, else cpu; 'cuda' without one falls back to cpu (logged)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={requested!r}: expected 'auto', 'cpu' or 'cuda'")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        log("device 'cuda' was requested but no CUDA device is available; training on cpu")
    return torch.device("cpu")


def train(spec: JobSpec, dataset: Dataset, context: TrainContext) -> TrainResult:
    """Train the spec's network on `dataset`, reporting one MetricPoint per completed epoch."""
    started = time.monotonic()
    settings = spec.training
    torch.manual_seed(settings.seed)  # fixes the initial weights and dropout masks
    device = pick_device(spec.device, context.log)
    info = dataset.info
    model = build_network(spec.model, info.shape, info.num_classes).to(device)
    optimizer = build_optimizer(model, settings)
    batches = batch_bounds(len(dataset.train_y), settings.batch_size)
    run = _Run(
        model=model,
        optimizer=optimizer,
        schedule=build_schedule(optimizer, settings, total_steps=len(batches) * settings.epochs),
        preprocess=preprocess_for(dataset),
        train_x=dataset.train_x.to(device),  # the whole split on the device, still uint8
        train_y=dataset.train_y.to(device),
        batches=batches,
        order_generator=torch.Generator().manual_seed(settings.seed),
        label_smoothing=settings.label_smoothing,
        context=context,
        deadline=None if settings.max_seconds is None else started + settings.max_seconds,
    )
    count = sum(parameter.numel() for parameter in model.parameters())
    context.log(f"training a {count}-parameter {spec.model.arch} on {device}, plain fp32 loop")
    epochs_completed, stop_reason = _train_epochs(run, dataset, settings, device)
    return _finish(run, dataset, spec, epochs_completed, stop_reason, device)


def _train_epochs(
    run: _Run, dataset: Dataset, settings: TrainingSpec, device: torch.device
) -> tuple[int, StopReason]:
    """Run epochs until done or stopped; returns (epochs completed, why training stopped)."""
    test_x, test_y = dataset.test_x.to(device), dataset.test_y.to(device)
    for epoch in range(1, settings.epochs + 1):
        outcome = _train_one_epoch(run)
        if outcome.stopped is not None:
            return epoch - 1, outcome.stopped
        val_loss, val_accuracy = evaluate(run.model, test_x, test_y, run.preprocess, device)
        samples = len(run.train_y)
        point = MetricPoint(
            epoch=epoch,
            train_loss=outcome.loss,
            train_accuracy=outcome.accuracy,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=outcome.lr,
            epoch_seconds=outcome.seconds,
            samples_per_second=samples / outcome.seconds if outcome.seconds > 0 else 0.0,
        )
        run.context.report_metrics(point)
        if settings.target_accuracy is not None and val_accuracy >= settings.target_accuracy:
            run.context.log(
                f"test accuracy {val_accuracy:.4f} reached the target after {epoch} epochs"
            )
            return epoch, "target_reached"
        if epoch < settings.epochs and _past(run.deadline):
            return epoch, "max_seconds"
    return settings.epochs, "completed"


def _train_one_epoch(run: _Run) -> _EpochOutcome:
    run.model.train()
    started = time.perf_counter()
    device = run.train_x.device
    order = torch.randperm(len(run.train_y), generator=run.order_generator).to(device)  # (N,)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # stays on device: no sync
    correct = torch.zeros((), dtype=torch.int64, device=device)
    lr = 0.0
    for start, end in run.batches:
        stopped = _stop_requested(run)
        if stopped is not None:
            return _EpochOutcome(math.nan, math.nan, time.perf_counter() - started, lr, stopped)
        index = order[start:end]  # (B,)
        x = run.preprocess.apply(run.train_x[index])  # (B, C, H, W) float32
        y = run.train_y[index]  # (B,) int64
        logits: torch.Tensor = run.model(x)  # (B, num_classes)
        loss = F.cross_entropy(logits, y, label_smoothing=run.label_smoothing)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        lr = float(run.optimizer.param_groups[0]["lr"])  # the rate this step uses
        run.optimizer.step()
        run.schedule.step()  # every schedule is stepped per batch
        loss_sum += loss.detach().to(torch.float64) * (end - start)
        correct += (logits.detach().argmax(dim=1) == y).sum()
    samples = len(run.train_y)
    mean_loss, accuracy = loss_sum.item() / samples, correct.item() / samples  # host sync
    return _EpochOutcome(mean_loss, accuracy, time.perf_counter() - started, lr, None)


def _stop_requested(run: _Run) -> StopReason | None:
    if run.context.should_stop():
        return "cancelled"
    if _past(run.deadline):
        return "max_seconds"
    return None


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _finish(
    run: _Run,
    dataset: Dataset,
    spec: JobSpec,
    epochs_completed: int,
    stop_reason: StopReason,
    device: torch.device,
) -> TrainResult:
    """Final test metrics, measured on CPU so the saved weights reproduce them exactly."""
    model = run.model.cpu().eval()
    cpu = torch.device("cpu")
    test_loss, test_accuracy = evaluate(model, dataset.test_x, dataset.test_y, run.preprocess, cpu)
    run.context.log(
        f"stopped ({stop_reason}) after {epochs_completed} epochs: "
        f"test accuracy {test_accuracy:.4f}, test loss {test_loss:.4f}"
    )
    return TrainResult(
        model=model,
        preprocess=run.preprocess,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        epochs_completed=epochs_completed,
        stop_reason=stop_reason,
        parameter_count=sum(parameter.numel() for parameter in model.parameters()),
        device=str(device),
        acceleration=acceleration_report(spec.acceleration),
    )


def evaluate(
    model: nn.Module,
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    preprocess: Preprocess,
    device: torch.device,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` (already on `device`) in eval mode, fp32.

    x_uint8 is (N, C, H, W) uint8 and y (N,) int64, on any device; batches of EVAL_BATCH_SIZE are
    moved to `device`. The model's train/eval mode is restored afterwards.
    """
    count = len(y)
    if count == 0:
        raise ValueError("cannot evaluate on an empty split")
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for start in range(0, count, EVAL_BATCH_SIZE):
            x = preprocess.apply(x_uint8[start : start + EVAL_BATCH_SIZE].to(device))
            labels = y[start : start + EVAL_BATCH_SIZE].to(device)  # (B,)
            logits: torch.Tensor = model(x)  # (B, num_classes)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").to(torch.float64)
            correct += (logits.argmax(dim=1) == labels).sum()
        loss, accuracy = loss_sum.item() / count, correct.item() / count  # host sync, once
    model.train(was_training)
    return loss, accuracy


def batch_bounds(count: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch over `count` samples; the last batch may be smaller.

    A last batch of a single sample joins the one before it: BatchNorm cannot train on one sample.
    """
    starts = list(range(0, count, batch_size))
    if len(starts) > 1 and count - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, [*starts[1:], count], strict=True))


def build_optimizer(model: nn.Module, settings: TrainingSpec) -> torch.optim.Optimizer:
    """The spec's optimizer over all parameters; momentum and nesterov apply to sgd only."""
    params = model.parameters()
    lr, decay = settings.lr, settings.weight_decay
    if settings.optimizer == "sgd":
        if settings.nesterov and settings.momentum == 0:
            raise ValueError("training.nesterov=True needs training.momentum > 0 (it is 0.0)")
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=settings.momentum,
            nesterov=settings.nesterov,
            weight_decay=decay,
        )
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    if settings.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=decay)
    raise ValueError(f"training.optimizer={settings.optimizer!r} is not supported")


def build_schedule(
    optimizer: torch.optim.Optimizer, settings: TrainingSpec, total_steps: int
) -> lr_scheduler.LRScheduler:
    """The spec's learning-rate schedule, to be stepped once per batch for `total_steps` batches."""
    name = settings.lr_schedule
    if name == "constant":
        return lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if name == "step":
        # x0.1 at 1/2 and again at 3/4 of training (never at step 0, which would skip the base lr)
        milestones = [max(1, total_steps // 2), max(1, total_steps * 3 // 4)]
        return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "onecycle":
        # cycle_momentum off: it would overwrite the spec's momentum / Adam betas (and turn
        # momentum on for plain sgd).
        return lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings.lr, total_steps=total_steps, cycle_momentum=False
        )
    raise ValueError(f"training.lr_schedule={name!r} is not supported")


def acceleration_report(requested: Literal["off", "auto"] | AccelerationSpec) -> dict[str, object]:
    """What this plain trainer applied of the requested acceleration, and why not the rest.

    It always keeps the data on the device (that is how the loop is written); nothing else.
    """
    reason = "not implemented in the plain trainer (eager fp32)"
    if requested == "off":
        asked: list[str] = []
    elif requested == "auto":
        asked = ["amp", "compile", "channels_last"]
    else:
        asked = [name for name, value in requested.model_dump().items() if value]
    return {
        "requested": requested if isinstance(requested, str) else requested.model_dump(),
        "mode": "off",
        "applied": ["data_on_device"],
        "skipped": {name: reason for name in asked if name != "data_on_device"},
    }
