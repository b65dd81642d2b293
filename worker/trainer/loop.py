"""The training loop: settings, data, model, optimizer, loop — top to bottom.

One loop serves both modes. ``acceleration: off`` feeds it from a DataLoader in fp32, eager, as
the PyTorch tutorial does (the honest baseline). ``auto`` keeps the data on the device as uint8,
runs the forward pass under bf16 autocast, uses channels_last, a fused optimizer, the free CPU
cores, and on CUDA torch.compile with CUDA graphs (accel.py decides and records why).

The trainer reaches the platform only through a TrainContext (report metrics, log, should_stop,
save/load a checkpoint), so it runs the same under Celery, in the benchmark and in tests.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional name)
from torch import nn
from torch.optim.swa_utils import AveragedModel

from taas.app.spec import DatasetInfo, JobSpec
from taas.worker.trainer.accel import (
    SWITCHES,
    AccelPlan,
    keep_threads_of_resumed_attempt,
    plan_acceleration,
)
from taas.worker.trainer.compiled import CompiledStep, architecture_key, compile_step
from taas.worker.trainer.data import (
    Dataset,
    Preprocess,
    preprocess_for,
    split_holdout,
    with_test_split,
)
from taas.worker.trainer.feed import DeviceBatches, LoaderBatches
from taas.worker.trainer.networks import build_network, for_inference
from taas.worker.trainer.recipe import build_optimizer, build_schedule, clip_gradients, make_ema
from taas.worker.trainer.series import StepPoint, StepSeries

# Fixed so that evaluating saved weights later reproduces the reported test metrics exactly:
# the batch size changes the order of the float sums.
EVAL_BATCH_SIZE = 1000
# Validation during training only ranks and stops; bigger batches keep the device busy.
FAST_EVAL_BATCH_SIZE = {"cuda": 8192, "cpu": 2000}

StopReason = Literal["completed", "cancelled", "target_reached", "max_seconds", "pruned"]

_log = logging.getLogger(__name__)


class TrainingPreempted(Exception):
    """Training stopped because its worker is going away, after checkpointing where it was: the
    job is to be given back, not finished."""


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
class TrainResult:
    model: nn.Module  # on CPU, in eval mode: the network whose weights are saved
    preprocess: Preprocess
    # evaluate() on CPU of for_inference(model, spec): reproducible from the saved weights
    test_accuracy: float
    test_loss: float
    epochs_completed: int
    stop_reason: StopReason
    parameter_count: int
    device: str  # where it trained
    acceleration: dict[str, object]  # what was applied and what was skipped, and why
    # Every point reported, in epoch order, those from before a resume included.
    history: list[MetricPoint] = dataclasses.field(default_factory=list)


@dataclass
class _Run:
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
    best: tuple[float, dict[str, torch.Tensor]] | None = None  # kept only with max_seconds
    history: list[MetricPoint] = dataclasses.field(default_factory=list)  # reported so far
    # Where a preempted attempt stopped inside an epoch: the resumed run goes on from there.
    within_epoch: _EpochProgress | None = None


@dataclass
class _EpochProgress:
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
    def from_json(cls, values: dict[str, Any]) -> _EpochProgress:
        val = values.get("val")
        return cls(**{**values, "val": None if val is None else (float(val[0]), float(val[1]))})


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
    """Train the spec's network on ``dataset``, reporting one MetricPoint per epoch."""
    device = pick_device(spec.device, context.log)
    plan = plan_acceleration(spec.acceleration, spec.model, device)
    checkpoint = context.load_checkpoint()
    if checkpoint is not None and device.type == "cpu":
        message = keep_threads_of_resumed_attempt(plan, checkpoint.get("cpu_threads"))
        if message is not None:
            context.log(message)
    dataset, validation = _splits(dataset, spec, context)
    with _cpu_threads(plan.threads), _fast_math(plan, device):
        run = _build_run(spec, dataset, validation, context, device, plan)
        first_epoch = _resume(run, checkpoint)
        count = sum(parameter.numel() for parameter in run.model.parameters())
        applied = [name for name in SWITCHES if getattr(plan, name)]
        context.log(
            f"training a {count}-parameter {spec.model.arch} on {device}; "
            f"acceleration {plan.mode}: {', '.join(applied) or 'none'}"
        )
        epochs_completed, stop_reason, last_point = _train_epochs(run, first_epoch)
        result = _finish(run, dataset, epochs_completed, stop_reason)
        if last_point is not None:
            if _validates_on_test(spec):
                # The last epoch's validation is the final test evaluation: no need to run it
                # twice.
                last_point.val_loss = result.test_loss
                last_point.val_accuracy = result.test_accuracy
                steps = len(run.feed) * spec.training.epochs
                run.series.add_evaluation(
                    steps, spec.training.epochs, result.test_loss, result.test_accuracy
                )
            _report(run, last_point)
        result.history = run.history
        return result


def _splits(
    dataset: Dataset, spec: JobSpec, context: TrainContext
) -> tuple[Dataset, tuple[torch.Tensor, torch.Tensor]]:
    """The dataset to train and test on, and the split to validate on during training.

    A dataset without a test split gives up ``val_fraction`` of its training split (seeded) as
    one. With ``validate_on: holdout`` another such share of the training split is held out for
    validation, so that the test split is seen only once, at the end.
    """
    settings = spec.training
    if len(dataset.test_y) == 0:
        dataset = with_test_split(dataset, settings.val_fraction, settings.seed)
        context.log(f"the dataset has no test split: {len(dataset.test_y)} samples held out")
    if settings.validate_on == "test":
        return dataset, (dataset.test_x, dataset.test_y)
    kept_x, kept_y, held_x, held_y = split_holdout(
        dataset.train_x, dataset.train_y, settings.val_fraction, settings.seed
    )
    info = dataset.info.model_copy(update={"train_size": len(kept_y)})
    context.log(f"validating on {len(held_y)} samples held out of the training split")
    return dataclasses.replace(dataset, info=info, train_x=kept_x, train_y=kept_y), (
        held_x,
        held_y,
    )


def _build_run(
    spec: JobSpec,
    dataset: Dataset,
    validation: tuple[torch.Tensor, torch.Tensor],
    context: TrainContext,
    device: torch.device,
    plan: AccelPlan,
) -> _Run:
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
    return _Run(
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


@contextmanager
def _cpu_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op threads for this run, and give the old count back after."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _fast_math(plan: AccelPlan, device: torch.device) -> Iterator[None]:
    """On CUDA with acceleration: let cuDNN pick the fastest kernels and matmuls use TF32."""
    if plan.mode == "off" or device.type != "cuda":
        yield
        return
    benchmark, precision = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = benchmark
        torch.set_float32_matmul_precision(precision)


def _train_epochs(run: _Run, first_epoch: int) -> tuple[int, StopReason, MetricPoint | None]:
    """Run epochs until done or stopped. Returns the epochs completed, why training stopped and,
    when it ran to the end, the last epoch's point, still to be reported with the final test
    metrics as its validation."""
    settings = run.spec.training
    epochs_completed = first_epoch - 1
    for epoch in range(first_epoch, settings.epochs + 1):
        last = epoch == settings.epochs and _validates_on_test(run.spec)
        progress, run.within_epoch = run.within_epoch or _EpochProgress(), None
        point, stopped = _train_one_epoch(run, epoch, progress, skip_last_evaluation=last)
        if point is None:  # stopped before the epoch finished: it does not count
            return epochs_completed, stopped or "cancelled", None
        epochs_completed = epoch
        if stopped is None and epoch == settings.epochs:
            return epochs_completed, "completed", point
        _report(run, point)
        if stopped is not None:
            return epochs_completed, stopped, None
        if epoch % settings.checkpoint_every_epochs == 0:
            run.context.save_checkpoint(_checkpoint_state(run, epoch))
    return epochs_completed, "completed", None


def _report(run: _Run, point: MetricPoint) -> None:
    run.history.append(point)
    run.context.report_metrics(point)


def _validates_on_test(spec: JobSpec) -> bool:
    return spec.training.validate_on == "test"


def _train_one_epoch(
    run: _Run, epoch: int, progress: _EpochProgress, skip_last_evaluation: bool
) -> tuple[MetricPoint | None, StopReason | None]:
    """One pass over the training split (or its rest, after ``progress.batches_done``),
    evaluating ``evals_per_epoch`` times on the way (the last epoch's final evaluation is left
    to the final test evaluation).

    Returns the epoch's metric point (None when stopped before its end) and why training must
    stop now (None to go on).
    """
    settings = run.spec.training
    run.model.train()
    order_at_start = run.order.get_state()  # the epoch's order is drawn from here
    started = time.perf_counter()
    evaluate_after = _evaluation_steps(len(run.feed), settings.evals_per_epoch)
    if skip_last_evaluation:
        evaluate_after.discard(len(run.feed))
    # Sums kept on the device: reading them would sync every step.
    loss_sum = torch.tensor(progress.loss_sum, dtype=torch.float32, device=run.device)
    correct = torch.tensor(progress.correct, dtype=torch.int64, device=run.device)
    seen, lr, train_seconds, val = progress.seen, progress.lr, progress.train_seconds, progress.val
    done = progress.batches_done
    for step, (x, y) in enumerate(run.feed.epoch(start=done), start=done + 1):
        stopped = _stop_requested(run)
        if stopped is not None:
            if stopped == "cancelled" and run.context.checkpoint_on_stop():
                train_seconds += time.perf_counter() - started
                so_far = _EpochProgress(
                    step - 1, loss_sum.item(), int(correct.item()), seen, lr, train_seconds, val
                )
                state = _checkpoint_state(run, epoch - 1, order_rng=order_at_start)
                run.context.save_checkpoint({**state, "within_epoch": so_far.to_json()})
                # No final evaluation or export: the next attempt finishes the job.
                raise TrainingPreempted(f"stopped after {step - 1} batches of epoch {epoch}")
            return None, stopped
        lr = float(run.optimizer.param_groups[0]["lr"])  # the rate this step uses
        loss, hits = _train_step(run, x, y)
        loss_sum.add_(loss, alpha=len(y))
        correct += hits
        seen += len(y)
        batches = len(run.feed)
        global_step, fractional_epoch = (epoch - 1) * batches + step, epoch - 1 + step / batches
        run.series.add_train_step(global_step, fractional_epoch, lr, loss)
        run.context.report_progress(epoch, step, batches, seen)
        if step in evaluate_after:
            _synchronize(run.device)  # the queued GPU work belongs to training, not evaluation
            train_seconds += time.perf_counter() - started  # evaluation time is not training
            val = _validate(run)
            run.series.add_evaluation(global_step, fractional_epoch, *val)
            started = time.perf_counter()
            if _reached_target(run, val[1]):
                point = _metric_point(epoch, loss_sum, correct, seen, val, lr, train_seconds)
                return point, "target_reached"
    _synchronize(run.device)
    train_seconds += time.perf_counter() - started
    run.series.flush()
    return _metric_point(epoch, loss_sum, correct, seen, val, lr, train_seconds), None


def _synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a wall-clock reading means what it says."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def _train_step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step; a compiled step times its first two (what compiling cost)."""
    if isinstance(run.forward_loss, CompiledStep):
        step: tuple[torch.Tensor, torch.Tensor] = run.forward_loss.timed(
            lambda: _step(run, x, y), lambda: _synchronize(run.device)
        )
        return step
    return _step(run, x, y)


def _step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch: x (B, C, H, W) float32, y (B,). Returns the loss and the
    number of correct predictions, both still on the device (reading them would sync)."""
    if run.plan.cuda_graphs:
        # The last step's graph outputs are done with: the next replay may overwrite them.
        torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.plan.amp):
        loss, correct = run.forward_loss(x, y)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    clip_gradients(run.model.parameters(), run.spec.training.grad_clip_norm)
    run.optimizer.step()
    run.schedule.step()  # every schedule is stepped per batch
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    loss = loss.detach()
    if run.plan.cuda_graphs:  # a CUDA graph overwrites its outputs on the next replay
        return loss.clone(), correct.clone()
    return loss, correct


COMPILED_CODE_SOURCES = {
    "memory": "compiled by this worker process for an earlier job",
    "disk": "loaded from the on-disk compile cache",
    "partial": "partly loaded from the on-disk compile cache",
    "none": "compiled from scratch",
}


def _acceleration_report(run: _Run) -> dict[str, object]:
    """The plan, and for a compiled step what really ran and what compiling cost."""
    report = run.plan.report()
    if isinstance(run.forward_loss, CompiledStep):
        compiled = run.forward_loss.report()
        report["compile"] = compiled
        source = COMPILED_CODE_SOURCES[str(compiled["cache"])]
        run.context.log(
            f"torch.compile: the step ran {compiled['ran']} ({compiled['reason'] or source}); "
            f"the first step took {compiled['compile_seconds']} s longer than the second"
        )
    return report


def _evaluation_steps(batches: int, evals_per_epoch: int) -> set[int]:
    """The batch numbers after which to evaluate: evenly spread, always including the last."""
    return {max(1, round(batches * k / evals_per_epoch)) for k in range(1, evals_per_epoch + 1)}


def _validate(run: _Run) -> tuple[float, float]:
    """(loss, accuracy) on the validation split of the model that would be exported now."""
    module = _exported_module(run)
    evaluated = for_inference(module, run.spec.training.test_time_flip)
    if isinstance(run.feed, DeviceBatches):
        loss, accuracy = fast_evaluate(evaluated, run.val_x, run.val_y, run.feed, run.plan.amp)
    else:
        loss, accuracy = evaluate(evaluated, run.val_x, run.val_y, run.preprocess, run.device)
    if run.deadline is not None and (run.best is None or accuracy > run.best[0]):
        run.best = (accuracy, {k: v.detach().clone() for k, v in module.state_dict().items()})
    return loss, accuracy


def _exported_module(run: _Run) -> nn.Module:
    return run.ema.module if run.ema is not None else run.model


def _reached_target(run: _Run, accuracy: float) -> bool:
    target = run.spec.training.target_accuracy
    if target is None or accuracy < target:
        return False
    run.context.log(f"test accuracy {accuracy:.4f} reached the target {target}")
    return True


def _metric_point(
    epoch: int,
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
    seen: int,
    val: tuple[float, float] | None,
    lr: float,
    seconds: float,
) -> MetricPoint:
    seen = max(seen, 1)
    return MetricPoint(
        epoch=epoch,
        train_loss=loss_sum.item() / seen,  # host sync: once per epoch
        train_accuracy=correct.item() / seen,
        val_loss=val[0] if val else None,
        val_accuracy=val[1] if val else None,
        lr=lr,
        epoch_seconds=seconds,
        samples_per_second=seen / seconds if seconds > 0 else 0.0,
    )


def _stop_requested(run: _Run) -> StopReason | None:
    if run.context.should_stop():
        return "cancelled"
    if run.context.should_prune():
        return "pruned"
    if run.deadline is not None and time.monotonic() >= run.deadline:
        return "max_seconds"
    return None


def _finish(
    run: _Run, dataset: Dataset, epochs_completed: int, stop_reason: StopReason
) -> TrainResult:
    """Final test metrics, measured on CPU in fp32 so the saved weights reproduce them exactly."""
    model = _exported_module(run)
    if stop_reason == "max_seconds" and run.best is not None:
        model.load_state_dict(run.best[1])  # the best model seen, not the last
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    cpu = torch.device("cpu")
    predicting = for_inference(model, run.spec.training.test_time_flip)
    test_loss, test_accuracy = evaluate(
        predicting, dataset.test_x, dataset.test_y, run.preprocess, cpu
    )
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
        device=str(run.device),
        acceleration=_acceleration_report(run),
    )


def _checkpoint_state(
    run: _Run, epoch: int, order_rng: torch.Tensor | None = None
) -> dict[str, Any]:
    """All a resumed run needs to continue exactly after ``epoch``: tensors and plain values
    only. ``order_rng`` is the order generator's state the next epoch draws from (by default
    its state now)."""
    state: dict[str, Any] = {
        "epoch": epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "order_rng": run.order.get_state() if order_rng is None else order_rng,
        "torch_rng": torch.get_rng_state(),
        # A resumed run on the CPU keeps this count (keep_threads_of_resumed_attempt says why).
        "cpu_threads": torch.get_num_threads(),
        "history": [point.to_json() for point in run.history],  # plain dicts: weights_only loads
    }
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    if run.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    return state


def _resume(run: _Run, state: dict[str, Any] | None) -> int:
    """Restore a checkpoint; returns the first epoch still to train (1 without one)."""
    if state is None:
        return 1
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["schedule"])
    run.order.set_state(state["order_rng"])
    torch.set_rng_state(state["torch_rng"])
    if run.ema is not None and "ema" in state:
        run.ema.load_state_dict(state["ema"])
    if "cuda_rng" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], run.device)
    # Checkpoints written before the history was kept have none.
    run.history = [MetricPoint(**point) for point in state.get("history", [])]
    epoch = int(state["epoch"])
    message = f"resumed from the checkpoint after epoch {epoch}"
    if "within_epoch" in state:  # saved when the last attempt was preempted mid-epoch
        run.within_epoch = _EpochProgress.from_json(state["within_epoch"])
        message += f", {run.within_epoch.batches_done} batches into epoch {epoch + 1}"
    run.context.log(message)
    return epoch + 1


def evaluate(
    model: nn.Module,
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    preprocess: Preprocess,
    device: torch.device,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` (already on ``device``) in eval mode, fp32.

    x_uint8 is (N, C, H, W) uint8 and y (N,) int64, on any device; batches of EVAL_BATCH_SIZE are
    moved to ``device``. The model's train/eval mode is restored afterwards.
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


def fast_evaluate(
    model: nn.Module, x_uint8: torch.Tensor, y: torch.Tensor, feed: DeviceBatches, amp: bool
) -> tuple[float, float]:
    """Validation during training: large batches on the device, bf16 when training uses it."""
    device = x_uint8.device
    size = FAST_EVAL_BATCH_SIZE["cuda" if device.type == "cuda" else "cpu"]
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for start in range(0, len(y), size):
            x = feed.normalize(x_uint8[start : start + size])
            labels = y[start : start + size]
            logits = model(x).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
    model.train(was_training)
    return loss_sum.item() / len(y), correct.item() / len(y)  # host sync, once
