"""Uploaded datasets: the canonical file read back and checked."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from taas.app.spec import DatasetInfo
from taas.worker.trainer.data import DatasetUnavailable, dataset_info_of_canonical, load_canonical
from tests.worker.trainer.data.writers import (
    CLASS_NAMES,
    canonical_metadata,
    canonical_tensors,
    write_canonical,
)


def test_canonical_uint8_images_with_a_test_split_round_trip(tmp_path: Path) -> None:
    tensors = canonical_tensors()
    path = write_canonical(tmp_path / "ds.safetensors", tensors)

    dataset = load_canonical(path, "ds_abc")

    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(dataset, key), tensors[key])
    assert dataset.train_x.dtype == torch.uint8
    assert dataset.info == DatasetInfo(
        name="ds_abc",
        shape=(2, 5, 4),
        num_classes=3,
        class_names=CLASS_NAMES,
        train_size=12,
        test_size=6,
    )
    assert dataset_info_of_canonical(path, "ds_abc") == dataset.info


def test_canonical_without_a_test_split_has_an_empty_one(tmp_path: Path) -> None:
    path = write_canonical(tmp_path / "ds.safetensors", canonical_tensors(test=False))

    dataset = load_canonical(path, "ds_abc")

    assert dataset.test_x.shape == (0, 2, 5, 4)
    assert dataset.test_x.dtype == torch.uint8
    assert dataset.test_y.shape == (0,)
    assert dataset.test_y.dtype == torch.int64
    assert (dataset.info.train_size, dataset.info.test_size) == (12, 0)
    assert dataset_info_of_canonical(path, "ds_abc").test_size == 0


def test_canonical_float_features_round_trip(tmp_path: Path) -> None:
    tensors = canonical_tensors(torch.float32, shape=(7, 1, 1))
    path = write_canonical(tmp_path / "ds.safetensors", tensors)

    dataset = load_canonical(path, "features")

    assert dataset.train_x.dtype == torch.float32
    assert torch.equal(dataset.train_x, tensors["train_x"])
    assert torch.equal(dataset.test_x, tensors["test_x"])
    assert dataset.info.shape == (7, 1, 1)
    assert dataset.info.name == "features"


def replace(key: str, value: torch.Tensor) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(tensors: dict[str, torch.Tensor]) -> None:
        tensors[key] = value

    return change


def drop(key: str) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(tensors: dict[str, torch.Tensor]) -> None:
        del tensors[key]

    return change


def nan_at_start(tensors: dict[str, torch.Tensor]) -> None:
    tensors["train_x"] = tensors["train_x"].float()
    tensors["test_x"] = tensors["test_x"].float()
    tensors["test_x"][0, 0, 0, 0] = math.nan


INVALID_CANONICAL: dict[str, tuple[Callable[[dict[str, torch.Tensor]], None], dict[str, str]]] = {
    "no version": (lambda tensors: None, {"class_names": json.dumps(CLASS_NAMES)}),
    "version 2": (lambda tensors: None, canonical_metadata(taas_dataset="2")),
    "class_names not JSON": (lambda tensors: None, canonical_metadata(class_names="[cat")),
    "class_names not a list": (lambda tensors: None, canonical_metadata(class_names='"cat"')),
    "one class": (lambda tensors: None, canonical_metadata(class_names='["cat"]')),
    "no train_y": (drop("train_y"), {}),
    "test_x alone": (drop("test_y"), {}),
    "extra tensor": (replace("val_x", torch.zeros(1)), {}),
    "int16 x": (replace("train_x", torch.zeros((12, 2, 5, 4), dtype=torch.int16)), {}),
    "3-d x": (replace("train_x", torch.zeros((12, 5, 4), dtype=torch.uint8)), {}),
    "empty x": (replace("train_x", torch.zeros((12, 0, 5, 4), dtype=torch.uint8)), {}),
    "int32 y": (replace("train_y", torch.zeros(12, dtype=torch.int32)), {}),
    "short y": (replace("train_y", torch.zeros(11, dtype=torch.int64)), {}),
    "label 3": (replace("test_y", torch.tensor([0, 1, 2, 3, 0, 0])), {}),
    "label -1": (replace("train_y", torch.full((12,), -1)), {}),
    "test shape": (replace("test_x", torch.zeros((6, 2, 4, 5), dtype=torch.uint8)), {}),
    "test dtype": (replace("test_x", torch.zeros((6, 2, 5, 4))), {}),
    "NaN": (nan_at_start, {}),
}
INVALID_MESSAGES = {
    "no version": "metadata taas_dataset is None, expected '1'",
    "version 2": "metadata taas_dataset is '2', expected '1'",
    "class_names not JSON": "metadata class_names is not JSON",
    "class_names not a list": "metadata class_names is '\"cat\"', not a list of strings",
    "one class": "need at least 2 classes",
    "no train_y": "lack train_x or train_y",
    "test_x alone": "test_x and test_y come together",
    "extra tensor": r"unexpected tensors \['val_x'\]",
    "int16 x": "train_x is I16, expected U8 or F32",
    "3-d x": r"train_x has shape \(12, 5, 4\), expected \(N, C, H, W\)",
    "empty x": r"train_x has shape \(12, 0, 5, 4\)",
    "int32 y": r"train_y is I32 \(12,\), expected I64 \(12,\)",
    "short y": r"train_y is I64 \(11,\), expected I64 \(12,\)",
    "label 3": r"test_y spans 0\.\.3, expected 0\.\.2",
    "label -1": r"train_y spans -1\.\.-1",
    "test shape": r"test_x is U8 \(6, 2, 4, 5\), train_x is U8 \(12, 2, 5, 4\)",
    "test dtype": "test_x is F32",
    "NaN": "test_x holds NaN or infinite values",
}


@pytest.mark.parametrize("case", sorted(INVALID_CANONICAL))
def test_invalid_canonical_file_raises_dataset_unavailable(tmp_path: Path, case: str) -> None:
    change, metadata = INVALID_CANONICAL[case]
    tensors = canonical_tensors()
    change(tensors)
    path = write_canonical(tmp_path / "ds.safetensors", tensors, metadata or None)

    with pytest.raises(DatasetUnavailable, match=INVALID_MESSAGES[case]) as raised:
        load_canonical(path, "ds_abc")
    assert str(raised.value).startswith(f"{path} is not a valid taas dataset file: ")


def test_canonical_header_checks_come_without_reading_tensors(tmp_path: Path) -> None:
    tensors = canonical_tensors()
    tensors["train_y"] = torch.full((12,), 7)  # out of range: only a full load sees it
    path = write_canonical(tmp_path / "ds.safetensors", tensors)

    assert dataset_info_of_canonical(path, "ds").train_size == 12
    with pytest.raises(DatasetUnavailable, match=r"train_y spans 7\.\.7"):
        load_canonical(path, "ds")
    with pytest.raises(DatasetUnavailable, match="not a valid taas dataset file: unreadable"):
        dataset_info_of_canonical(tmp_path / "missing.safetensors", "ds")


def test_canonical_file_that_is_not_safetensors_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "ds.safetensors"
    path.write_bytes(b"\x80\x04not safetensors at all")

    with pytest.raises(DatasetUnavailable, match="not a valid taas dataset file: unreadable"):
        load_canonical(path, "ds")
