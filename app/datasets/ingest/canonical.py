"""The canonical form every upload becomes: one safetensors file with train_x (N, C, H, W) uint8
or float32, train_y (N,) int64, the same for test_x/test_y when there is a test split, and
metadata naming the classes. Written atomically; the same dataset always gives the same bytes."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import safetensors.numpy

from taas.app.datasets.ingest.common import CanonicalDataset

CANONICAL_VERSION = "1"


def write_canonical(dataset: CanonicalDataset, path: Path) -> None:
    """Write the safetensors file the worker reads, atomically; the same dataset always gives the
    same bytes."""
    metadata = {
        "taas_dataset": CANONICAL_VERSION,
        "class_names": json.dumps(dataset.class_names),
        "source_format": dataset.source_format,
    }
    partial = path.with_name(f".{path.name}.partial")
    try:
        safetensors.numpy.save_file(_canonical_tensors(dataset), partial, metadata=metadata)
        _sort_header_metadata(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _canonical_tensors(dataset: CanonicalDataset) -> dict[str, npt.NDArray[Any]]:
    splits = {
        "train": (dataset.train_x, dataset.train_y),
        "test": (dataset.test_x, dataset.test_y),
    }
    tensors: dict[str, npt.NDArray[Any]] = {}
    for split, (x, y) in splits.items():
        if x is not None and y is not None:
            # safetensors copies raw memory from each data pointer: arrays must be contiguous.
            tensors[f"{split}_x"] = np.ascontiguousarray(x)  # (N, C, H, W) uint8 or float32
            tensors[f"{split}_y"] = np.ascontiguousarray(y, dtype=np.int64)  # (N,)
    return tensors


def _sort_header_metadata(path: Path) -> None:
    """safetensors serializes __metadata__ from a Rust HashMap, so its key order changes from one
    call to the next; rewrite the header with the keys sorted. Only the order changes (the header
    is ASCII JSON: class names went through json.dumps), so the header keeps its length and the
    tensor data stays where it is."""
    with path.open("r+b") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        rewritten = json.dumps(header, separators=(",", ":")).encode().ljust(length)
        if len(rewritten) != length:
            raise RuntimeError(f"safetensors header changed length: {length} -> {len(rewritten)}")
        file.seek(8)
        file.write(rewritten)
