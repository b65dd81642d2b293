"""The optimizer, the learning-rate schedule and the weight EMA a spec asks for."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim import lr_scheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from taas.app.spec import TrainingSpec

# One-cycle starts and ends this far below the peak learning rate (PyTorch's OneCycleLR values).
ONECYCLE_START_DIVISOR = 25.0
ONECYCLE_END_DIVISOR = 25.0 * 1e4
ONECYCLE_DEFAULT_WARMUP = 0.25  # fraction of training spent rising when warmup_epochs is 0


def build_optimizer(
    model: nn.Module, settings: TrainingSpec, *, fused: bool = False
) -> torch.optim.Optimizer:
    """The spec's optimizer over all parameters; momentum and nesterov apply to sgd only.

    ``fused`` runs the whole step as one kernel (adam, adamw, sgd); rmsprop has no fused
    version, so it uses the multi-tensor (foreach) path instead.
    """
    params = list(model.parameters())
    lr, decay = settings.lr, settings.weight_decay
    speed = True if fused else None  # None: PyTorch's own default for the device
    if settings.optimizer == "sgd":
        if settings.nesterov and settings.momentum == 0:
            raise ValueError("training.nesterov=True needs training.momentum > 0 (it is 0.0)")
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=settings.momentum,
            nesterov=settings.nesterov,
            weight_decay=decay,
            fused=speed,
        )
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay, fused=speed)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay, fused=speed)
    if settings.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=decay, foreach=fused or None)
    raise ValueError(f"training.optimizer={settings.optimizer!r} is not supported")


def lr_factor(
    settings: TrainingSpec, total_steps: int, steps_per_epoch: int
) -> Callable[[int], float]:
    """The schedule as a pure function of the step: multiplier of ``settings.lr``.

    A pure function (inside a LambdaLR) keeps the scheduler's state a single step counter, so a
    checkpoint restores it exactly.
    """
    name, total = settings.lr_schedule, max(1, total_steps)
    warmup = round(settings.warmup_epochs * steps_per_epoch)
    if name == "onecycle":
        rise = warmup or max(1, round(ONECYCLE_DEFAULT_WARMUP * total))
        return lambda step: _onecycle(step, rise, total)

    def shape(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        if name == "step":  # x0.1 at 1/2 and again at 3/4 of training
            return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
        return 1.0

    return shape


def _onecycle(step: int, rise: int, total: int) -> float:
    """Cosine up from lr/25 to lr over ``rise`` steps, then cosine down to lr/250000."""
    start, end = 1.0 / ONECYCLE_START_DIVISOR, 1.0 / ONECYCLE_END_DIVISOR
    if step < rise:
        return _cosine_between(start, 1.0, step / rise)
    return _cosine_between(1.0, end, min(1.0, (step - rise) / max(1, total - rise)))


def _cosine_between(begin: float, finish: float, fraction: float) -> float:
    return finish + (begin - finish) * 0.5 * (1.0 + math.cos(math.pi * fraction))


def build_schedule(
    optimizer: torch.optim.Optimizer,
    settings: TrainingSpec,
    total_steps: int,
    steps_per_epoch: int = 1,
) -> lr_scheduler.LambdaLR:
    """The spec's schedule, stepped once per batch for ``total_steps`` batches."""
    return lr_scheduler.LambdaLR(optimizer, lr_factor(settings, total_steps, steps_per_epoch))


def make_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of the weights (and BN statistics), or None."""
    if decay is None:
        return None
    average = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]
    return AveragedModel(model, multi_avg_fn=average, use_buffers=True)


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float | None) -> None:
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)
