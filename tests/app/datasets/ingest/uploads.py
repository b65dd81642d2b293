"""Small helpers for the ingest tests: tiny uploads built in place, and ingest() called on them.

All files are built here, tiny; limits are lowered instead of making big files.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors
import safetensors.numpy
from PIL import Image

from taas.app.datasets.ingest import (
    CanonicalDataset,
    IngestLimits,
    IngestOptions,
    InvalidDataset,
    ingest,
    write_canonical,
)

LIMITS = IngestLimits()
DEFAULTS = IngestOptions()
RED = (255, 0, 0)
GRAY = 100
Entries = list[tuple[str | zipfile.ZipInfo, bytes]]


def ingested(
    path: Path, options: IngestOptions = DEFAULTS, limits: IngestLimits = LIMITS
) -> CanonicalDataset:
    return ingest(path, path.name, options, limits)


def refused(
    path: Path, options: IngestOptions = DEFAULTS, limits: IngestLimits = LIMITS
) -> InvalidDataset:
    with pytest.raises(InvalidDataset) as caught:
        ingested(path, options, limits)
    return caught.value


def labels(count: int, classes: int = 2) -> np.ndarray:
    return np.arange(count, dtype=np.int64) % classes


def write_npz(path: Path, compressed: bool = False, **arrays: Any) -> Path:
    save = np.savez_compressed if compressed else np.savez
    save(path, **arrays)
    return path


def write_zip(path: Path, entries: Entries) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def image_bytes(
    width: int,
    height: int,
    mode: str = "RGB",
    color: int | tuple[int, ...] = RED,
    kind: str = "PNG",
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, kind)
    return buffer.getvalue()


def class_images(root: str = "", per_class: int = 6) -> Entries:
    """cat/ (RGB red) and dog/ (grayscale) PNGs, 8 wide and 6 high: a valid upload to spoil."""
    cats = [(f"{root}cat/{i}.png", image_bytes(8, 6)) for i in range(per_class)]
    dogs = [(f"{root}dog/{i}.png", image_bytes(8, 6, "L", GRAY)) for i in range(per_class)]
    return [*cats, *dogs]


def assert_round_trips(dataset: CanonicalDataset, tmp_path: Path) -> None:
    """write_canonical gives the documented file, byte-identical on every write."""
    paths = [tmp_path / f"canonical-{i}.safetensors" for i in range(5)]
    for path in paths:
        write_canonical(dataset, path)
    assert len({path.read_bytes() for path in paths}) == 1
    tensors = safetensors.numpy.load_file(paths[0])
    with safetensors.safe_open(paths[0], framework="np") as file:
        metadata = file.metadata()
    assert metadata == {
        "taas_dataset": "1",
        "class_names": json.dumps(dataset.class_names),
        "source_format": dataset.source_format,
    }
    expected = {"train_x": dataset.train_x, "train_y": dataset.train_y}
    if dataset.test_x is not None and dataset.test_y is not None:
        expected |= {"test_x": dataset.test_x, "test_y": dataset.test_y}
    assert tensors.keys() == expected.keys()
    for name, array in expected.items():
        assert tensors[name].dtype == array.dtype
        np.testing.assert_array_equal(tensors[name], array)
