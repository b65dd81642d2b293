"""Evaluating a model on a split: ``evaluate`` in fp32 with a fixed batch size, for the final
test metrics that the saved weights reproduce, and ``fast_evaluate`` on the device, for the
validation during training that only ranks and stops."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional name)
from torch import nn

from taas.worker.trainer.data import Preprocess
from taas.worker.trainer.feed import DeviceBatches

# Fixed so that evaluating saved weights later reproduces the reported test metrics exactly:
# the batch size changes the order of the float sums.
EVAL_BATCH_SIZE = 1000
# Validation during training only ranks and stops; bigger batches keep the device busy.
FAST_EVAL_BATCH_SIZE = {"cuda": 8192, "cpu": 2000}


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
