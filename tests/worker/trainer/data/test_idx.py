"""MNIST and Fashion-MNIST from IDX files: torchvision's layout, damaged files, the system copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from taas.app.spec import FASHION_MNIST_CLASSES, JobSpec
from taas.worker.datasets import files as dataset_files
from taas.worker.trainer.data import DatasetUnavailable, available, load_dataset, preprocess_for
from tests.worker.trainer.data.writers import IDX_NAMES, idx_bytes, write_mnist


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_torchvision_layout_under_data_dir(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist(tmp_path / "MNIST" / "raw", gz=gz)

    dataset = load_dataset(JobSpec(dataset="mnist"), tmp_path)

    assert dataset.train_x.shape == (20, 1, 28, 28)
    assert dataset.train_x.dtype == torch.uint8
    assert dataset.train_y.dtype == torch.int64
    assert np.array_equal(dataset.train_x[:, 0].numpy(), arrays[IDX_NAMES[0]])
    assert np.array_equal(dataset.test_y.numpy(), arrays[IDX_NAMES[3]])
    assert (dataset.info.train_size, dataset.info.test_size) == (20, 10)
    assert available("mnist", tmp_path) == (True, f"IDX files in {tmp_path / 'MNIST' / 'raw'}")


def test_mnist_without_files_is_unavailable_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="TAAS_DATA_DIR"):
        load_dataset(JobSpec(dataset="mnist"), None)
    with pytest.raises(DatasetUnavailable, match=str(tmp_path / "MNIST" / "raw")):
        load_dataset(JobSpec(dataset="mnist"), tmp_path)
    ok, reason = available("mnist", tmp_path)
    assert not ok
    assert "train-images-idx3-ubyte.gz" in reason


def corrupt_bad_magic(raw: Path) -> None:
    content = bytearray((raw / IDX_NAMES[0]).read_bytes())
    content[2] = 0x0D  # float type code instead of unsigned byte
    (raw / IDX_NAMES[0]).write_bytes(bytes(content))


def corrupt_truncated(raw: Path) -> None:
    content = (raw / IDX_NAMES[2]).read_bytes()
    (raw / IDX_NAMES[2]).write_bytes(content[:-100])


def corrupt_label_count(raw: Path) -> None:
    (raw / IDX_NAMES[1]).write_bytes(idx_bytes(np.zeros(19)))


def corrupt_label_value(raw: Path) -> None:
    (raw / IDX_NAMES[3]).write_bytes(idx_bytes(np.full(10, 10)))


def corrupt_gzip(raw: Path) -> None:
    (raw / IDX_NAMES[0]).unlink()
    (raw / f"{IDX_NAMES[0]}.gz").write_bytes(b"\x1f\x8b this is not gzip data")


def corrupt_empty(raw: Path) -> None:
    (raw / IDX_NAMES[1]).write_bytes(b"")


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (corrupt_bad_magic, "magic number 0x00000d03, expected 0x00000803"),
        (corrupt_truncated, "file holds"),
        (corrupt_label_count, "19 labels for 20 images"),
        (corrupt_label_value, "label 10 >= 10 classes"),
        (corrupt_gzip, "unreadable"),
        (corrupt_empty, "shorter than the IDX header"),
    ],
)
def test_corrupt_idx_file_raises_dataset_unavailable(
    tmp_path: Path, corrupt: Callable[[Path], None], message: str
) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw)
    corrupt(raw)

    with pytest.raises(DatasetUnavailable, match=message) as raised:
        load_dataset(JobSpec(dataset="mnist"), tmp_path)
    assert "fetch it again" in str(raised.value)


def test_corrupt_fashion_mnist_in_data_dir_is_reported_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fallback = tmp_path / "system"
    write_mnist(fallback, gz=True)
    monkeypatch.setattr(dataset_files, "SYSTEM_FASHION_MNIST", fallback)
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    write_mnist(raw)
    corrupt_truncated(raw)

    with pytest.raises(DatasetUnavailable, match="t10k-images"):
        load_dataset(JobSpec(dataset="fashion_mnist"), tmp_path / "data")
    # Without files in the data dir (or without a data dir) the system copy is used.
    for data_dir in (None, tmp_path / "empty"):
        dataset = load_dataset(JobSpec(dataset="fashion_mnist"), data_dir)
        assert dataset.train_x.shape == (20, 1, 28, 28)


@pytest.mark.skipif(
    not dataset_files.SYSTEM_FASHION_MNIST.is_dir(),
    reason="/usr/share/datasets/fashion-mnist is absent",
)
def test_fashion_mnist_loads_the_full_system_copy() -> None:
    dataset = load_dataset(JobSpec(dataset="fashion_mnist"), None)

    assert dataset.train_x.shape == (60000, 1, 28, 28)
    assert dataset.test_x.shape == (10000, 1, 28, 28)
    assert dataset.train_x.dtype == torch.uint8
    assert torch.bincount(dataset.train_y).tolist() == [6000] * 10  # labels 0-9, balanced
    assert torch.bincount(dataset.test_y).tolist() == [1000] * 10
    assert dataset.info.class_names == FASHION_MNIST_CLASSES
    preprocess = preprocess_for(dataset)
    assert preprocess.mean == [pytest.approx(0.2860, abs=1e-4)]  # the published statistics
    assert preprocess.std == [pytest.approx(0.3530, abs=1e-4)]
    assert available("fashion_mnist", None) == (
        True,
        f"IDX files in {dataset_files.SYSTEM_FASHION_MNIST}",
    )
