"""What every upload format shares: the limits and options an ingest runs under, the canonical
dataset it returns, the InvalidDataset it refuses with, and the checks and message helpers the
readers have in common."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

SourceFormat = Literal["npz", "csv", "zip"]
Samples = npt.NDArray[np.uint8 | np.float32]  # (N, C, H, W)
Labels = npt.NDArray[np.int64]  # (N,)
SampleShape = tuple[int, int, int]  # (C, H, W)


@dataclass(frozen=True)
class IngestLimits:
    max_samples: int = 1_000_000  # train + test samples
    min_train_samples: int = 10
    max_classes: int = 1000
    max_values_per_sample: int = 3 * 256 * 256  # C*H*W (or D for feature vectors)
    max_zip_entries: int = 100_000
    max_uncompressed_bytes: int = 4 * 1024**3  # sum of a zip's (or npz's) declared entry sizes
    max_compression_ratio: float = 200.0  # per entry and in total: uncompressed / compressed
    max_image_pixels: int = 4096 * 4096  # per decoded image (decompression bombs)


@dataclass(frozen=True)
class IngestOptions:
    label_column: str | None = None  # CSV: the label column; default "label"
    image_size: tuple[int, int] | None = None  # zip: (height, width); default the most common


@dataclass
class CanonicalDataset:
    train_x: Samples  # (N, C, H, W) uint8 or float32; feature vectors are (N, D, 1, 1)
    train_y: Labels  # (N,) int64 in [0, num_classes)
    test_x: Samples | None
    test_y: Labels | None
    class_names: list[str]  # label i is class_names[i]
    source_format: SourceFormat

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> SampleShape:
        channels, height, width = self.train_x.shape[1:]
        return (channels, height, width)

    @property
    def train_size(self) -> int:
        return len(self.train_x)

    @property
    def test_size(self) -> int:
        return 0 if self.test_x is None else len(self.test_x)


class InvalidDataset(Exception):
    """The upload is refused; `status_code` (413, 415 or 422) and `message` say why, naming the
    problem."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def preview(names: list[str], count: int) -> str:
    shown = ", ".join(repr(name) for name in names[:count])
    return shown + (", ..." if len(names) > count else "")


def check_sample_counts(train_size: int, test_size: int, limits: IngestLimits) -> None:
    total = train_size + test_size
    if total > limits.max_samples:
        raise InvalidDataset(
            422,
            f"the dataset has {total} samples ({train_size} train + {test_size} test); "
            f"at most {limits.max_samples} are allowed",
        )
    if train_size < limits.min_train_samples:
        raise InvalidDataset(
            422,
            f"the training split has {train_size} samples; "
            f"at least {limits.min_train_samples} are needed",
        )


def check_sample_values(sample_shape: SampleShape, limits: IngestLimits) -> None:
    values = math.prod(sample_shape)
    if values > limits.max_values_per_sample:
        raise InvalidDataset(
            422,
            f"each sample has {values} values (C, H, W = {sample_shape}); "
            f"at most {limits.max_values_per_sample} are allowed",
        )


def check_two_classes(present: set[str]) -> None:
    if len(present) < 2:
        listed = ", ".join(sorted(present))
        raise InvalidDataset(
            422,
            f"the training split has {len(present)} class ({listed}); at least 2 are needed",
        )


def numbered_classes(train_y: Labels, test_y: Labels | None) -> list[str]:
    highest = int(train_y.max()) if test_y is None else max(int(train_y.max()), int(test_y.max()))
    return [str(label) for label in range(highest + 1)]
