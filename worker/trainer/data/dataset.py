"""The Dataset every reader returns, and what the readers share: the error for a damaged
built-in file, and float data walked in chunks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from taas.app.spec import DatasetInfo
from taas.worker.datasets.files import DatasetUnavailable

# Float data is walked in chunks of about this many values (32 MB as float64): its statistics
# and the finiteness check of an upload never need a float64 copy of a whole split.
FLOAT_CHUNK_VALUES = 1 << 22

Uint8Array = npt.NDArray[np.uint8]
Int64Array = npt.NDArray[np.int64]


@dataclass
class Dataset:
    info: DatasetInfo
    train_x: torch.Tensor  # (N, C, H, W) uint8 images, or float32 values (features: (N, D, 1, 1))
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor  # (M, C, H, W), train_x's dtype; M is 0 when there is no test split
    test_y: torch.Tensor  # (M,) int64


def sample_chunks(x: torch.Tensor) -> list[torch.Tensor]:
    """Views of (N, ...) x, each of about FLOAT_CHUNK_VALUES values (at least one sample)."""
    rows = max(FLOAT_CHUNK_VALUES // max(math.prod(x.shape[1:]), 1), 1)
    return [x[start : start + rows] for start in range(0, len(x), rows)]


def corrupt_file(path: Path, problem: str, kind: str = "IDX") -> DatasetUnavailable:
    """The error for a damaged built-in file (IDX, or a CIFAR-10 batch): a fresh copy fixes it."""
    message = f"{path} is not a valid {kind} file: {problem}; delete it and fetch it again"
    return DatasetUnavailable(message)
