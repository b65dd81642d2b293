"""What one training run is made of: the TrainContext it reaches the platform through, the
MetricPoint it reports every epoch, and the Run that train() builds once (the model, its
optimizer and schedule, the batches, the validation split), with how far a preempted epoch got."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional name)
from torch import nn
from torch.optim.swa_utils import AveragedModel

from taas.app.spec import DatasetInfo, JobSpec
from taas.worker.trainer.accel import SWITCHES, AccelPlan
from taas.worker.trainer.compiled import architecture_key, compile_step
from taas.worker.trainer.data import Dataset, Preprocess, preprocess_for
from taas.worker.trainer.feed import DeviceBatches, LoaderBatches
from taas.worker.trainer.networks import build_network
from taas.worker.trainer.recipe import build_optimizer, build_schedule, make_ema
from taas.worker.trainer.series import StepPoint, StepSeries


class TrainContext(Protocol):
    def report_metrics(self, point: MetricPoint) -> None:
        """Called once per completed epoch (and for the epoch a target was reached in)."""

    def should_stop(self) -> bool:
        """Called before every batch: True stops training (cancelled) within one batch."""

    def should_prune(self) -> bool:
        """Called before every batch: True stops training early (a sweep found the run behind
        its others); the model is kept and evaluated, and the run ends as ``pruned``."""

    def checkpoint_on_stop(self) -> bool:
        """Asked when should_stop stopped training: True (a preemption, not a cancel) saves the
        state at that batch, so the next attempt goes on from there instead of from the last
        epoch's checkpoint, and raises TrainingPreempted."""

    def report_progress(self, epoch: int, batches_done: int, batches: int, samples: int) -> None:
        """Called after every batch (keep it cheap): ``epoch`` (1-based) is under way, with
        ``batches_done`` of its ``batches`` and ``samples`` samples done."""

    def report_step(self, point: StepPoint) -> None:
        """A point of the step series: a training loss every few steps, or an evaluation."""

    def report_start(self, device: str, acceleration: dict[str, object]) -> None:
        """Training starts on ``device`` with this acceleration plan (the report at the end
        adds what compiling did): readers see them while the job runs."""

    def log(self, message: str) -> None:
        """A line for the job's event log."""

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Keep ``state`` (tensors and plain values only) to resume from."""

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last saved state, or None to start from scratch."""


@dataclass
class MetricPoint:
    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's batches, with label smoothing, in train mode
    train_accuracy: float
    val_loss: float | None  # on the validation split (see validate_on), without label smoothing
    val_accuracy: float | None
    lr: float  # the learning rate of the epoch's last step
    epoch_seconds: float  # the training pass only, not the evaluation
    samples_per_second: float

    def to_json(self) -> dict[str, float | int | None]:
        return dataclasses.asdict(self)


@dataclass
class Run:
    """Everything the loop needs, built once by train()."""

    spec: JobSpec
    plan: AccelPlan
    device: torch.device
    model: nn.Module  # the parameters being trained
    forward_loss: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    ema: AveragedModel | None
    feed: LoaderBatches | DeviceBatches
    order: torch.Generator  # CPU generator: same order on every device, saved in checkpoints
    preprocess: Preprocess
    val_x: torch.Tensor  # (M, C, H, W) uint8 (or float32) on the device: the validation split
    val_y: torch.Tensor
    context: TrainContext
    series: StepSeries  # the training loss every few steps, and every evaluation
    deadline: float | None  # time.monotonic() past which training stops
    # The best validation so far (score, weights, fractional epoch): kept with max_seconds and
    # with checkpoints.export "best", and saved in the checkpoints for a resumed attempt.
    best: tuple[float, dict[str, torch.Tensor], float] | None = None
    history: list[MetricPoint] = dataclasses.field(default_factory=list)  # reported so far
    # Where a preempted attempt stopped inside an epoch: the resumed run goes on from there.
    within_epoch: EpochProgress | None = None


@dataclass
class EpochProgress:
    """An epoch part-way: the batches done and what its metric point has gathered so far."""

    batches_done: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    lr: float = 0.0
    train_seconds: float = 0.0
    val: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> EpochProgress:
        val = values.get("val")
        return cls(**{**values, "val": None if val is None else (float(val[0]), float(val[1]))})


def build_run(
    spec: JobSpec,
    dataset: Dataset,
    validation: tuple[torch.Tensor, torch.Tensor],
    context: TrainContext,
    device: torch.device,
    plan: AccelPlan,
) -> Run:
    settings = spec.training
    torch.manual_seed(settings.seed)  # fixes the initial weights and dropout masks
    info = dataset.info
    model = build_network(spec.model, info.shape, info.num_classes, pool_first=plan.pool_first)
    model = model.to(device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    preprocess = preprocess_for(dataset)
    order = torch.Generator().manual_seed(settings.seed)
    feed = _make_feed(spec, dataset, preprocess, order, device, plan)
    optimizer = build_optimizer(model, settings, fused=plan.fused_optimizer)
    schedule = build_schedule(optimizer, settings, len(feed) * settings.epochs, len(feed))
    started = time.monotonic()
    return Run(
        spec=spec,
        plan=plan,
        device=device,
        model=model,
        forward_loss=_compiled(
            _ForwardLoss(model, settings.label_smoothing), plan, spec, info, device
        ),
        optimizer=optimizer,
        schedule=schedule,
        ema=make_ema(model, settings.ema_decay),
        feed=feed,
        order=order,
        preprocess=preprocess,
        val_x=validation[0].to(device),
        val_y=validation[1].to(device),
        context=context,
        series=StepSeries(len(feed) * settings.epochs, context.report_step),
        deadline=None if settings.max_seconds is None else started + settings.max_seconds,
    )


def _make_feed(
    spec: JobSpec,
    dataset: Dataset,
    preprocess: Preprocess,
    order: torch.Generator,
    device: torch.device,
    plan: AccelPlan,
) -> LoaderBatches | DeviceBatches:
    settings = spec.training
    if not plan.data_on_device:
        return LoaderBatches(
            dataset.train_x, dataset.train_y, settings.batch_size, preprocess, order, device
        )
    return DeviceBatches(
        dataset.train_x,
        dataset.train_y,
        settings.batch_size,
        preprocess,
        order,
        device,
        augment=settings.augment,
        channels_last=plan.channels_last,
        drop_last=plan.compile,  # compiled graphs (and CUDA graphs) want a single batch shape
    )


def _compiled(
    module: _ForwardLoss, plan: AccelPlan, spec: JobSpec, info: DatasetInfo, device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    if not plan.compile:
        return module
    # Everything that shapes the compiled step (compiled.py keeps one per architecture).
    key = architecture_key(
        {
            "model": spec.model.model_dump(mode="json"),
            "input": info.shape,
            "classes": info.num_classes,
            "batch_size": spec.training.batch_size,
            "label_smoothing": spec.training.label_smoothing,
            "switches": [name for name in SWITCHES if getattr(plan, name)],
            "device": device.type,
        }
    )
    # "reduce-overhead" replays the compiled forward and backward as CUDA graphs.
    return compile_step(module, key, "reduce-overhead" if plan.cuda_graphs else "default")


class _ForwardLoss(nn.Module):
    """Network and loss as one module, so torch.compile fuses (and CUDA graphs capture) both."""

    def __init__(self, model: nn.Module, label_smoothing: float) -> None:
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)  # (B, classes), bf16 under autocast
        # The loss in fp32: bf16 logits would lose the small differences softmax depends on.
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        correct = (logits.detach().argmax(dim=1) == y).sum()
        return loss, correct
