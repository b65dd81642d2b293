"""The training loop: settings, data, model, optimizer, loop — top to bottom.

One loop serves both modes. ``acceleration: off`` feeds it from a DataLoader in fp32, eager, as
the PyTorch tutorial does (the honest baseline). ``auto`` keeps the data on the device as uint8,
runs the forward pass under bf16 autocast, uses channels_last, a fused optimizer, the free CPU
cores, and on CUDA torch.compile with CUDA graphs (accel.py decides and records why).

The trainer reaches the platform only through a TrainContext (report metrics, log, should_stop,
save/load a checkpoint), so it runs the same under Celery, in the benchmark and in tests.

What the loop runs on is built once, before the first epoch (run.py); a checkpoint is written and
resumed in checkpoints.py, and a model evaluated in evaluation.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from taas.app.core.wording import counted
from taas.app.spec import JobSpec
from taas.worker.trainer.accel import (
    SWITCHES,
    AccelPlan,
    keep_threads_of_resumed_attempt,
    plan_acceleration,
)
from taas.worker.trainer.checkpoints import checkpoint_state, resume
from taas.worker.trainer.compiled import CompiledStep
from taas.worker.trainer.data import Dataset, Preprocess, split_holdout, with_test_split
from taas.worker.trainer.evaluation import evaluate, fast_evaluate
from taas.worker.trainer.feed import DeviceBatches
from taas.worker.trainer.networks import for_inference
from taas.worker.trainer.recipe import clip_gradients
from taas.worker.trainer.run import EpochProgress, MetricPoint, Run, TrainContext, build_run

StopReason = Literal["completed", "cancelled", "target_reached", "max_seconds", "pruned"]

_log = logging.getLogger(__name__)


class TrainingPreempted(Exception):
    """Training stopped because its worker is going away, after checkpointing where it was: the
    job is to be given back, not finished."""


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
    # The (fractional) epoch of the exported weights: the last, or the best validation's.
    exported_epoch: float | None = None


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
        run = build_run(spec, dataset, validation, context, device, plan)
        first_epoch = resume(run, checkpoint)
        count = sum(parameter.numel() for parameter in run.model.parameters())
        applied = [name for name in SWITCHES if getattr(plan, name)]
        context.log(
            f"training a {count}-parameter {spec.model.arch} on {device}; "
            f"acceleration {plan.mode}: {', '.join(applied) or 'none'}"
        )
        context.report_start(str(device), plan.report())
        epochs_completed, stop_reason, last_point = _train_epochs(run, first_epoch)
        result = _finish(run, dataset, epochs_completed, stop_reason)
        if last_point is not None:
            if _validates_on_test(spec) and not _exports_best(spec):
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


def _train_epochs(run: Run, first_epoch: int) -> tuple[int, StopReason, MetricPoint | None]:
    """Run epochs until done or stopped. Returns the epochs completed, why training stopped and,
    when it ran to the end, the last epoch's point, still to be reported with the final test
    metrics as its validation."""
    settings = run.spec.training
    epochs_completed = first_epoch - 1
    for epoch in range(first_epoch, settings.epochs + 1):
        # Exporting the best: the last epoch's validation is a candidate like the others.
        last = epoch == settings.epochs and _validates_on_test(run.spec)
        last = last and not _exports_best(run.spec)
        progress, run.within_epoch = run.within_epoch or EpochProgress(), None
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
            run.context.save_checkpoint(checkpoint_state(run, epoch))
    return epochs_completed, "completed", None


def _report(run: Run, point: MetricPoint) -> None:
    run.history.append(point)
    run.context.report_metrics(point)


def _validates_on_test(spec: JobSpec) -> bool:
    return spec.training.validate_on == "test"


def _exports_best(spec: JobSpec) -> bool:
    return spec.checkpoints is not None and spec.checkpoints.export == "best"


def _train_one_epoch(
    run: Run, epoch: int, progress: EpochProgress, skip_last_evaluation: bool
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
                so_far = EpochProgress(
                    step - 1, loss_sum.item(), int(correct.item()), seen, lr, train_seconds, val
                )
                state = checkpoint_state(run, epoch - 1, order_rng=order_at_start)
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
            val = _validate(run, fractional_epoch)
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


def _train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step; a compiled step times its first two (what compiling cost)."""
    if isinstance(run.forward_loss, CompiledStep):
        step: tuple[torch.Tensor, torch.Tensor] = run.forward_loss.timed(
            lambda: _step(run, x, y), lambda: _synchronize(run.device)
        )
        return step
    return _step(run, x, y)


def _step(run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def _acceleration_report(run: Run) -> dict[str, object]:
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


def _validate(run: Run, epoch: float) -> tuple[float, float]:
    """(loss, accuracy) on the validation split of the model that would be exported now."""
    module = _exported_module(run)
    evaluated = for_inference(module, run.spec.training.test_time_flip)
    if isinstance(run.feed, DeviceBatches):
        loss, accuracy = fast_evaluate(evaluated, run.val_x, run.val_y, run.feed, run.plan.amp)
    else:
        loss, accuracy = evaluate(evaluated, run.val_x, run.val_y, run.preprocess, run.device)
    if run.deadline is not None or _exports_best(run.spec):
        _keep_if_best(run, module, loss, accuracy, epoch)
    return loss, accuracy


def _keep_if_best(run: Run, module: nn.Module, loss: float, accuracy: float, epoch: float) -> None:
    """Remember these weights when this validation is the best so far, the newest of equals as
    for the kept checkpoints (a copy: training goes on changing the module's)."""
    policy = run.spec.checkpoints
    metric, mode = policy.selection() if policy is not None else ("val_accuracy", "max")
    score = accuracy if metric == "val_accuracy" else loss
    if run.best is not None:
        best = run.best[0]
        if not (score >= best if mode == "max" else score <= best):
            return
    weights = {key: value.detach().clone() for key, value in module.state_dict().items()}
    run.best = (score, weights, epoch)


def _exported_module(run: Run) -> nn.Module:
    return run.ema.module if run.ema is not None else run.model


def _reached_target(run: Run, accuracy: float) -> bool:
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


def _stop_requested(run: Run) -> StopReason | None:
    if run.context.should_stop():
        return "cancelled"
    if run.context.should_prune():
        return "pruned"
    if run.deadline is not None and time.monotonic() >= run.deadline:
        return "max_seconds"
    return None


def _finish(
    run: Run, dataset: Dataset, epochs_completed: int, stop_reason: StopReason
) -> TrainResult:
    """Final test metrics, measured on CPU in fp32 so the saved weights reproduce them exactly."""
    model = _exported_module(run)
    exported_epoch = float(epochs_completed)
    best_wanted = stop_reason == "max_seconds" or _exports_best(run.spec)
    if best_wanted and run.best is not None:
        score, weights, exported_epoch = run.best
        model.load_state_dict(weights)  # the best model seen, not the last
        if _exports_best(run.spec):
            run.context.log(
                f"exporting the weights of epoch {exported_epoch:g}, the best validation "
                f"({score:.4f})"
            )
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    cpu = torch.device("cpu")
    predicting = for_inference(model, run.spec.training.test_time_flip)
    test_loss, test_accuracy = evaluate(
        predicting, dataset.test_x, dataset.test_y, run.preprocess, cpu
    )
    run.context.log(
        f"stopped ({stop_reason}) after {counted(epochs_completed, 'epoch')}: "
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
        exported_epoch=exported_epoch,
    )
