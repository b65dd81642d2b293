"""Uploaded datasets: the canonical safetensors file the API writes, checked throughout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from taas.app.spec import DatasetInfo
from taas.worker.datasets.files import DatasetUnavailable
from taas.worker.trainer.data.dataset import Dataset, sample_chunks

# The canonical file the API writes for an uploaded dataset: format version and tensor names.
CANONICAL_VERSION = "1"
CANONICAL_X_DTYPES = {"U8": torch.uint8, "F32": torch.float32}  # safetensors header codes
CANONICAL_TENSORS = {"train_x", "train_y", "test_x", "test_y"}


def load_canonical(path: Path, name: str) -> Dataset:
    """The dataset in the canonical file the API writes for an upload, checked throughout.

    The file holds train_x (N, C, H, W) uint8 or float32, train_y (N,) int64, optionally test_x
    and test_y alike, and metadata {"taas_dataset": "1", "class_names": "<JSON list>", ...}.
    Without a test split, test_x is (0, C, H, W) and test_y (0,).
    """
    with _open_canonical(path) as file:
        info = _canonical_info(path, name, file)
        tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (not a dict)
    for split in ("train", "test"):
        if f"{split}_x" in tensors:
            _check_canonical_values(path, split, tensors[f"{split}_x"], tensors[f"{split}_y"], info)
    train_x = tensors["train_x"]
    test_x = tensors.get("test_x", train_x.new_empty((0, *train_x.shape[1:])))
    test_y = tensors.get("test_y", torch.empty(0, dtype=torch.int64))
    return Dataset(info, train_x, tensors["train_y"], test_x, test_y)


def dataset_info_of_canonical(path: Path, name: str) -> DatasetInfo:
    """The DatasetInfo of a canonical file, from its header alone (no tensor data is read).

    Labels and float values are only checked by load_canonical, which reads them.
    """
    with _open_canonical(path) as file:
        return _canonical_info(path, name, file)


@contextmanager
def _open_canonical(path: Path) -> Iterator[Any]:
    try:
        with safe_open(path, framework="pt") as file:
            yield file
    except (SafetensorError, OSError) as error:
        raise _invalid_canonical(path, f"unreadable ({error})") from error


def _invalid_canonical(path: Path, problem: str) -> DatasetUnavailable:
    return DatasetUnavailable(f"{path} is not a valid taas dataset file: {problem}")


def _canonical_info(path: Path, name: str, file: Any) -> DatasetInfo:
    """Checks the header (metadata, tensor names, dtypes, shapes) and describes the dataset."""
    metadata: dict[str, str] = file.metadata() or {}
    version = metadata.get("taas_dataset")
    if version != CANONICAL_VERSION:
        problem = f"metadata taas_dataset is {version!r}, expected {CANONICAL_VERSION!r}"
        raise _invalid_canonical(path, problem)
    class_names = _canonical_class_names(path, metadata.get("class_names"))
    _check_canonical_names(path, set(file.keys()))
    headers = {key: file.get_slice(key) for key in file.keys()}  # noqa: SIM118 (not a dict)
    shapes = {key: tuple(header.get_shape()) for key, header in headers.items()}
    dtypes = {key: header.get_dtype() for key, header in headers.items()}
    _check_canonical_split(path, "train", shapes, dtypes)
    if "test_x" in shapes:
        _check_canonical_split(path, "test", shapes, dtypes)
        if shapes["test_x"][1:] != shapes["train_x"][1:] or dtypes["test_x"] != dtypes["train_x"]:
            problem = (
                f"test_x is {dtypes['test_x']} {shapes['test_x']}, train_x is "
                f"{dtypes['train_x']} {shapes['train_x']}: samples must match"
            )
            raise _invalid_canonical(path, problem)
    channels, height, width = shapes["train_x"][1:]
    return DatasetInfo(
        name=name,
        shape=(channels, height, width),
        num_classes=len(class_names),
        class_names=class_names,
        train_size=shapes["train_x"][0],
        test_size=shapes["test_x"][0] if "test_x" in shapes else 0,
        value_bytes=4 if dtypes["train_x"] == "F32" else 1,
    )


def _canonical_class_names(path: Path, text: str | None) -> list[str]:
    try:
        names = json.loads(text) if text is not None else None
    except json.JSONDecodeError as error:
        raise _invalid_canonical(path, f"metadata class_names is not JSON ({error})") from error
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise _invalid_canonical(path, f"metadata class_names is {text!r}, not a list of strings")
    if len(names) < 2:
        raise _invalid_canonical(path, f"metadata class_names {names!r}: need at least 2 classes")
    return names


def _check_canonical_names(path: Path, names: set[str]) -> None:
    if not {"train_x", "train_y"} <= names:
        raise _invalid_canonical(path, f"tensors {sorted(names)} lack train_x or train_y")
    if ("test_x" in names) != ("test_y" in names):
        raise _invalid_canonical(path, "test_x and test_y come together or not at all")
    if names - CANONICAL_TENSORS:
        raise _invalid_canonical(path, f"unexpected tensors {sorted(names - CANONICAL_TENSORS)}")


def _check_canonical_split(
    path: Path, split: str, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, str]
) -> None:
    """x must be (n, C, H, W) uint8 or float32 with n, C, H, W >= 1, and y (n,) int64."""
    x_shape, y_shape = shapes[f"{split}_x"], shapes[f"{split}_y"]
    x_dtype, y_dtype = dtypes[f"{split}_x"], dtypes[f"{split}_y"]
    if x_dtype not in CANONICAL_X_DTYPES:
        raise _invalid_canonical(path, f"{split}_x is {x_dtype}, expected U8 or F32")
    if len(x_shape) != 4 or min(x_shape) < 1:
        problem = f"{split}_x has shape {x_shape}, expected (N, C, H, W), none of them 0"
        raise _invalid_canonical(path, problem)
    if y_dtype != "I64" or y_shape != x_shape[:1]:
        problem = f"{split}_y is {y_dtype} {y_shape}, expected I64 ({x_shape[0]},)"
        raise _invalid_canonical(path, problem)


def _check_canonical_values(
    path: Path, split: str, x: torch.Tensor, y: torch.Tensor, info: DatasetInfo
) -> None:
    """Labels index class_names, and float values are finite (a NaN would poison training)."""
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= info.num_classes:
        problem = f"{split}_y spans {low}..{high}, expected 0..{info.num_classes - 1}"
        raise _invalid_canonical(path, f"{problem} (one per class name)")
    if x.dtype == torch.float32 and not all(bool(c.isfinite().all()) for c in sample_chunks(x)):
        raise _invalid_canonical(path, f"{split}_x holds NaN or infinite values")
