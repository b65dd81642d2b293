"""The per-channel normalization a model is trained with, measured on the training split."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from taas.worker.trainer.data.dataset import Dataset, sample_chunks


@dataclass(frozen=True)
class Preprocess:
    """x = (stored_x * scale - mean[c]) / std[c], per channel c.

    scale is 1/255 for uint8 pixels (so mean and std are in [0, 1] units, as torchvision's are)
    and 1 for float32 data.
    """

    scale: float
    mean: list[float]
    std: list[float]

    def to_json(self) -> dict[str, float | list[float]]:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Preprocess:
        scale, mean, std = data["scale"], data["mean"], data["std"]
        if not isinstance(scale, int | float) or not isinstance(mean, list):
            raise ValueError(f"preprocess {data!r} is not a Preprocess.to_json() dict")
        if not isinstance(std, list) or len(mean) != len(std):
            raise ValueError(f"preprocess {data!r} is not a Preprocess.to_json() dict")
        return cls(scale=float(scale), mean=[float(m) for m in mean], std=[float(s) for s in std])

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 or float32 -> (N, C, H, W) float32 on the same device."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (x.to(torch.float32) * self.scale - mean) / std


def preprocess_for(dataset: Dataset) -> Preprocess:
    """Per-channel mean and std of the training split (uint8 pixels scaled to [0, 1] first)."""
    x = dataset.train_x  # (N, C, H, W)
    if x.dtype == torch.float32:
        means, stds = _float_mean_std(x)
        return Preprocess(scale=1.0, mean=[_to_float32(m) for m in means], std=_divisors(stds))
    if x.dtype != torch.uint8:
        raise ValueError(f"train_x is {x.dtype}; the trainer reads uint8 or float32")
    pixel_stats = [_pixel_mean_std(x[:, channel]) for channel in range(x.shape[1])]
    means = [_to_float32(mean / 255.0) for mean, _ in pixel_stats]
    return Preprocess(scale=1.0 / 255.0, mean=means, std=_divisors(s / 255 for _, s in pixel_stats))


def _divisors(stds: Iterable[float]) -> list[float]:
    # A constant channel has std 0 (or one float32 cannot tell from 0): dividing by 1 keeps it
    # finite, and it carries no signal anyway.
    return [std32 if (std32 := _to_float32(std)) > 0 else 1.0 for std in stds]


def _pixel_mean_std(pixels: torch.Tensor) -> tuple[float, float]:
    """Exact mean and population std of uint8 pixels, from a 256-bin histogram.

    The histogram reads the uint8 pixels as they are: no float or int64 copy of the data (60k x 784
    pixels would be 376 MB as float64).
    """
    counts = torch.bincount(pixels.reshape(-1), minlength=256).to(torch.float64)  # (256,)
    values = torch.arange(256, dtype=torch.float64)
    total = float(counts.sum())
    mean = float((counts * values).sum()) / total
    variance = float((counts * values.square()).sum()) / total - mean * mean
    return mean, math.sqrt(max(variance, 0.0))


def _float_mean_std(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std of (N, C, H, W) float32, summed in float64.

    Two passes (sum, then squared deviations from the mean) for accuracy, each over chunks of
    samples: a float64 copy of the whole split would be twice its size again.
    """
    channels = x.shape[1]
    count = x.numel() // channels  # values per channel
    sums = torch.zeros(channels, dtype=torch.float64, device=x.device)
    for chunk in sample_chunks(x):
        sums += chunk.to(torch.float64).sum(dim=(0, 2, 3))
    mean = sums / count  # (C,)
    squares = torch.zeros_like(sums)
    for chunk in sample_chunks(x):
        squares += (chunk.to(torch.float64) - mean.view(1, -1, 1, 1)).square().sum(dim=(0, 2, 3))
    return mean.tolist(), (squares / count).sqrt().tolist()


def _to_float32(value: float) -> float:
    # Rounded to float32 so that model.json holds exactly the numbers apply() computes with.
    return float(np.float32(value))
