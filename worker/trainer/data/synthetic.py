"""The synthetic dataset: noisy copies of one random prototype per class, generated from a seed."""

from __future__ import annotations

import numpy as np
import torch

from taas.app.spec import DatasetInfo, SyntheticOptions
from taas.worker.trainer.data.dataset import Dataset, Uint8Array

# Synthetic noise is generated this many samples at a time, so float32 scratch stays small.
SYNTHETIC_CHUNK = 4096


def synthetic_dataset(info: DatasetInfo, options: SyntheticOptions) -> Dataset:
    """One random prototype image per class; samples are prototype + gaussian noise, seeded.

    Noise std is `options.noise` times the full pixel range (255), so the default 0.6 buries each
    pixel but leaves every class easy to find from the whole image.
    """
    rng = np.random.default_rng(options.seed)
    prototypes = rng.integers(0, 256, size=(options.num_classes, *options.shape), dtype=np.uint8)
    train_x, train_y = _noisy_samples(rng, prototypes, options.train_size, options.noise)
    test_x, test_y = _noisy_samples(rng, prototypes, options.test_size, options.noise)
    return Dataset(info, train_x, train_y, test_x, test_y)


def _noisy_samples(
    rng: np.random.Generator, prototypes: Uint8Array, count: int, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, C, H, W) uint8 images and (count,) int64 labels, classes balanced and shuffled."""
    num_classes = prototypes.shape[0]
    labels = rng.permutation(np.arange(count, dtype=np.int64) % num_classes)
    images = np.empty((count, *prototypes.shape[1:]), dtype=np.uint8)
    for start in range(0, count, SYNTHETIC_CHUNK):
        chunk = labels[start : start + SYNTHETIC_CHUNK]
        gaussian = rng.standard_normal((len(chunk), *prototypes.shape[1:]), dtype=np.float32)
        pixels = prototypes[chunk].astype(np.float32) + gaussian * np.float32(noise * 255.0)
        images[start : start + len(chunk)] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(labels)
