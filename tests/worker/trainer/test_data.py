from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from app.spec import FASHION_MNIST_CLASSES, JobSpec
from tests.worker.trainer.fakes import tiny_spec
from worker.trainer import data
from worker.trainer.data import (
    DatasetUnavailable,
    Preprocess,
    available,
    load_dataset,
    preprocess_for,
)

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian dims, then the data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(
    raw: Path, train: int = 20, test: int = 10, gz: bool = False
) -> dict[str, np.ndarray]:
    """A tiny valid MNIST in torchvision's raw/ layout; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (train, 28, 28)),
        IDX_NAMES[1]: rng.integers(0, 10, (train,)),
        IDX_NAMES[2]: rng.integers(0, 256, (test, 28, 28)),
        IDX_NAMES[3]: rng.integers(0, 10, (test,)),
    }
    raw.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        content = idx_bytes(array)
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (raw / name).write_bytes(content)
    return arrays


# --- synthetic -------------------------------------------------------------------------------


def test_synthetic_has_the_requested_shapes_dtypes_and_balanced_labels() -> None:
    dataset = load_dataset(tiny_spec(options={"num_classes": 4}), None)

    assert dataset.train_x.shape == (256, 1, 12, 12)
    assert dataset.test_x.shape == (128, 1, 12, 12)
    assert dataset.train_x.dtype == torch.uint8
    assert dataset.train_y.dtype == torch.int64
    assert torch.bincount(dataset.train_y).tolist() == [64, 64, 64, 64]
    assert torch.bincount(dataset.test_y).tolist() == [32, 32, 32, 32]
    assert dataset.train_y[:8].tolist() != sorted(dataset.train_y[:8].tolist())  # shuffled
    assert dataset.info.class_names == ["class_0", "class_1", "class_2", "class_3"]


def test_synthetic_is_deterministic_in_its_seed() -> None:
    first = load_dataset(tiny_spec(), None)
    second = load_dataset(tiny_spec(), None)
    other = load_dataset(tiny_spec(options={"seed": 4}), None)

    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(first.test_y, second.test_y)
    assert not torch.equal(first.train_x, other.train_x)


def test_synthetic_defaults_follow_synthetic_options() -> None:
    dataset = load_dataset(JobSpec(dataset="synthetic"), None)

    assert dataset.train_x.shape == (2000, 1, 28, 28)
    assert dataset.test_x.shape == (500, 1, 28, 28)
    assert dataset.info.num_classes == 10


def test_synthetic_noise_option_changes_how_far_samples_stray() -> None:
    quiet = load_dataset(tiny_spec(options={"noise": 0.1}), None)
    loud = load_dataset(tiny_spec(options={"noise": 2.0}), None)

    # Same prototypes (same seed); more noise pushes more pixels to the 0/255 clip.
    def saturated(x: torch.Tensor) -> float:
        return ((x == 0) | (x == 255)).float().mean().item()

    assert saturated(loud.train_x) > saturated(quiet.train_x) + 0.3


# --- preprocess ------------------------------------------------------------------------------


def test_preprocess_normalizes_the_training_split_per_channel() -> None:
    dataset = load_dataset(tiny_spec(options={"shape": [3, 8, 8]}), None)

    preprocess = preprocess_for(dataset)
    x = preprocess.apply(dataset.train_x)  # (N, 3, 8, 8) float32

    assert x.dtype == torch.float32
    assert x.shape == dataset.train_x.shape
    assert len(preprocess.mean) == 3
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5)


def test_preprocess_follows_its_documented_formula_and_json() -> None:
    preprocess = Preprocess(scale=1 / 255, mean=[0.25, 0.5], std=[0.5, 2.0])
    x = torch.tensor([[[[0]], [[255]]]], dtype=torch.uint8)  # (1, 2, 1, 1)

    out = preprocess.apply(x)

    assert out.flatten().tolist() == [pytest.approx(-0.5), pytest.approx(0.25)]
    assert preprocess.to_json() == {"scale": 1 / 255, "mean": [0.25, 0.5], "std": [0.5, 2.0]}
    assert Preprocess.from_json(preprocess.to_json()) == preprocess


def test_preprocess_statistics_are_float32_values() -> None:
    preprocess = preprocess_for(load_dataset(tiny_spec(), None))

    for value in [*preprocess.mean, *preprocess.std]:
        assert float(np.float32(value)) == value


# --- IDX files -------------------------------------------------------------------------------


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
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", fallback)
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    write_mnist(raw)
    corrupt_truncated(raw)

    with pytest.raises(DatasetUnavailable, match="t10k-images"):
        load_dataset(JobSpec(dataset="fashion_mnist"), tmp_path / "data")
    # Without files in the data dir (or without a data dir) the system copy is used.
    for data_dir in (None, tmp_path / "empty"):
        dataset = load_dataset(JobSpec(dataset="fashion_mnist"), data_dir)
        assert dataset.train_x.shape == (20, 1, 28, 28)


def test_cifar10_and_unknown_datasets_are_unavailable() -> None:
    with pytest.raises(DatasetUnavailable, match="cifar10 is not available on this server yet"):
        load_dataset(JobSpec(dataset="cifar10"), None)
    with pytest.raises(DatasetUnavailable, match="'ds_123' is not built in"):
        load_dataset(JobSpec(dataset="ds_123"), None)
    assert available("cifar10", None) == (False, "cifar10 is not available on this server yet")
    assert available("synthetic", None)[0]
    assert not available("ds_123", None)[0]


@pytest.mark.skipif(
    not data.SYSTEM_FASHION_MNIST.is_dir(), reason="/usr/share/datasets/fashion-mnist is absent"
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
    assert available("fashion_mnist", None) == (True, f"IDX files in {data.SYSTEM_FASHION_MNIST}")
