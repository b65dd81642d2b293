from __future__ import annotations

import gzip
import io
import json
import math
import os
import pickle
import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from taas.app.spec import FASHION_MNIST_CLASSES, DatasetInfo, JobSpec
from taas.worker.datasets import files as dataset_files
from taas.worker.trainer import data
from taas.worker.trainer.data import (
    DatasetUnavailable,
    Preprocess,
    available,
    builtin,
    dataset_info_of_canonical,
    load_canonical,
    load_dataset,
    preprocess_for,
    split_holdout,
    with_test_split,
)
from tests.worker.trainer.fakes import tiny_spec

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


def test_unknown_datasets_are_not_built_in() -> None:
    with pytest.raises(DatasetUnavailable, match="'ds_123' is not built in"):
        load_dataset(JobSpec(dataset="ds_123"), None)
    assert available("synthetic", None)[0]
    assert not available("ds_123", None)[0]


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


# --- CIFAR-10 --------------------------------------------------------------------------------

# One known pixel: green channel, row 2, column 3 of the first training image. In a CIFAR-10
# record it sits after the label byte, the 1024 red bytes and two 32-byte green rows.
KNOWN_PIXEL = (1, 2, 3)
KNOWN_PIXEL_OFFSET = 1024 + 2 * 32 + 3  # within the 3072 pixel bytes
CIFAR_TRAIN_STEMS = [f"data_batch_{index}" for index in range(1, 6)]
CifarBatches = list[tuple[np.ndarray, np.ndarray]]  # per batch: (n, 3072) uint8 rows, (n,) labels


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did when CIFAR-10's Python batches were made: str and bytes
    both as BINSTRING (Python 3's protocol 2 would refer to _codecs.encode instead)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_python2_str
    dispatch[bytes] = save_python2_str


def python2_pickle(obj: object, numpy_module: str = "numpy.core.multiarray") -> bytes:
    """`obj` pickled as the real batches are, naming numpy's array module as numpy 1.x did."""
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    # GLOBAL opcodes name the module in a newline-ended line, so the name can be swapped in place.
    module_line = f"c{numpy_module}\n".encode()
    return re.sub(rb"cnumpy\.(_core|core)\.multiarray\n", module_line, buffer.getvalue())


def cifar_batches(sizes: list[int], seed: int = 0) -> CifarBatches:
    """(n, 3072) uint8 rows and (n,) labels per batch; the first image is black but for
    KNOWN_PIXEL (200)."""
    rng = np.random.default_rng(seed)
    batches = [
        (rng.integers(0, 256, (size, 3072), dtype=np.uint8), rng.integers(0, 10, size))
        for size in sizes
    ]
    batches[0][0][0] = 0
    batches[0][0][0, KNOWN_PIXEL_OFFSET] = 200
    return batches


def write_cifar_bin(data_dir: Path, sizes: tuple[int, ...] = (3, 2, 2, 2, 2, 4)) -> CifarBatches:
    """Five training batches and a test batch of `sizes` records: label byte, then pixels."""
    batches = cifar_batches(list(sizes))
    folder = data_dir / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, (rows, labels) in zip([*CIFAR_TRAIN_STEMS, "test_batch"], batches, strict=True):
        records = np.concatenate([labels.astype(np.uint8)[:, None], rows], axis=1)
        (folder / f"{stem}.bin").write_bytes(records.tobytes())
    return batches


def write_cifar_py(
    data_dir: Path,
    sizes: tuple[int, ...] = (3, 2, 2, 2, 2, 4),
    seed: int = 0,
    numpy_module: str = "numpy.core.multiarray",
) -> CifarBatches:
    """The Python version's six pickled dicts, keyed and typed as in the real files."""
    batches = cifar_batches(list(sizes), seed)
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, (rows, labels) in zip([*CIFAR_TRAIN_STEMS, "test_batch"], batches, strict=True):
        batch = {
            b"batch_label": f"{stem} of 6".encode(),
            b"labels": [int(label) for label in labels],
            b"data": rows,
            b"filenames": [f"image_{index}.png".encode() for index in range(len(labels))],
        }
        (folder / stem).write_bytes(python2_pickle(batch, numpy_module))
    return batches


def assert_cifar_matches(dataset: data.Dataset, batches: CifarBatches) -> None:
    train_rows = np.concatenate([rows for rows, _ in batches[:5]])
    assert dataset.train_x.shape == (11, 3, 32, 32)
    assert dataset.test_x.shape == (4, 3, 32, 32)
    assert dataset.train_x.dtype == torch.uint8
    assert dataset.train_y.dtype == torch.int64
    assert (dataset.info.train_size, dataset.info.test_size) == (11, 4)
    assert dataset.info.shape == (3, 32, 32)
    assert dataset.train_x[0, KNOWN_PIXEL[0], KNOWN_PIXEL[1], KNOWN_PIXEL[2]] == 200
    assert int(dataset.train_x[0].count_nonzero()) == 1
    assert np.array_equal(dataset.train_x.reshape(11, 3072).numpy(), train_rows)
    assert dataset.train_y.tolist() == np.concatenate([y for _, y in batches[:5]]).tolist()
    assert dataset.test_y.tolist() == batches[5][1].tolist()


def test_cifar10_binary_batches_load_channel_then_row_then_column(tmp_path: Path) -> None:
    batches = write_cifar_bin(tmp_path)

    dataset = load_dataset(JobSpec(dataset="cifar10"), tmp_path)

    assert_cifar_matches(dataset, batches)
    assert available("cifar10", tmp_path) == (
        True,
        f"CIFAR-10 batches in {tmp_path / 'cifar-10-batches-bin'}",
    )


@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_cifar10_python_batches_load_like_the_binary_ones(
    tmp_path: Path, numpy_module: str
) -> None:
    batches = write_cifar_py(tmp_path, numpy_module=numpy_module)

    dataset = load_dataset(JobSpec(dataset="cifar10"), tmp_path)

    assert_cifar_matches(dataset, batches)
    assert available("cifar10", tmp_path)[1].endswith("cifar-10-batches-py")


def test_cifar10_prefers_complete_binary_batches_over_python_ones(tmp_path: Path) -> None:
    binary = write_cifar_bin(tmp_path)
    python = write_cifar_py(tmp_path, seed=1)  # other labels, so the source shows

    assert load_dataset(JobSpec(dataset="cifar10"), tmp_path).test_y.tolist() == (
        binary[5][1].tolist()
    )
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").unlink()
    assert load_dataset(JobSpec(dataset="cifar10"), tmp_path).test_y.tolist() == (
        python[5][1].tolist()
    )


# Payloads whose arguments still work when Python 2 strings read back as bytes, as they do for
# the loader (encoding="bytes"): os functions take bytes paths and commands.
class MkdirCall:
    """Unpickled through plain pickle, calls os.mkdir(marker)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


class SystemCall:
    """Unpickled through plain pickle, runs `touch marker` through os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize(("payload", "refused"), [(MkdirCall, "mkdir"), (SystemCall, "system")])
def test_cifar10_pickle_calling_anything_but_numpy_is_refused_unexecuted(
    tmp_path: Path, payload: type[MkdirCall | SystemCall], refused: str
) -> None:
    write_cifar_py(tmp_path / "data")
    marker = tmp_path / "marker"
    batch = {b"labels": [0], b"data": payload(marker)}
    malicious = python2_pickle(batch)
    path = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(malicious)

    with pytest.raises(DatasetUnavailable, match=rf"refused to load \w+\.{refused}") as raised:
        load_dataset(JobSpec(dataset="cifar10"), tmp_path / "data")

    assert str(path) in str(raised.value)
    assert not marker.exists()
    # The payload is live: plain pickle would have run it.
    pickle.loads(malicious, encoding="bytes")  # noqa: S301 (the point of the test)
    assert marker.exists()


def cifar_path(data_dir: Path, stem: str, binary: bool) -> Path:
    if binary:
        return data_dir / "cifar-10-batches-bin" / f"{stem}.bin"
    return data_dir / "cifar-10-batches-py" / stem


def python_batch(**entries: object) -> bytes:
    batch = {b"labels": [1, 2], b"data": np.zeros((2, 3072), np.uint8)}
    return python2_pickle({**batch, **{key.encode(): value for key, value in entries.items()}})


CORRUPT_CIFAR: dict[str, tuple[bool, Callable[[bytes], bytes], str]] = {
    "bin truncated": (
        True,
        lambda raw: raw[:-1],
        "6145 bytes is not a whole number of 3073-byte records",
    ),
    "bin empty": (True, lambda raw: b"", "it holds no images"),
    "bin label 10": (True, lambda raw: b"\x0a" + raw[1:], "labels span .*10, expected 0..9"),
    "py garbage": (False, lambda raw: b"not a pickle", "cannot unpickle it"),
    "py truncated": (False, lambda raw: raw[: len(raw) // 2], "cannot unpickle it"),
    "py list": (False, lambda raw: python2_pickle([1, 2]), "it holds a list, not a dict"),
    "py no data": (False, lambda raw: python2_pickle({b"labels": [1]}), "'data' is missing"),
    "py data shape": (
        False,
        lambda raw: python_batch(data=np.zeros((2, 100), np.uint8)),
        r"rows of \(100,\) pixels",
    ),
    "py data dtype": (
        False,
        lambda raw: python_batch(data=np.zeros((2, 3072), np.int16)),
        r"'data' is a int16 array of shape \(2, 3072\)",
    ),
    "py label count": (False, lambda raw: python_batch(labels=[1]), "1 labels for 2 images"),
    "py label text": (False, lambda raw: python_batch(labels=[b"cat", 1]), "list of ints"),
    "py label -1": (False, lambda raw: python_batch(labels=[-1, 0]), r"labels span -1\.\.0"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_CIFAR))
def test_corrupt_cifar10_batch_raises_dataset_unavailable_naming_it(
    tmp_path: Path, case: str
) -> None:
    binary, corrupt, message = CORRUPT_CIFAR[case]
    (write_cifar_bin if binary else write_cifar_py)(tmp_path)
    path = cifar_path(tmp_path, "data_batch_4", binary)
    path.write_bytes(corrupt(path.read_bytes()))

    with pytest.raises(DatasetUnavailable, match=message) as raised:
        load_dataset(JobSpec(dataset="cifar10"), tmp_path)
    assert str(raised.value).startswith(f"{path} is not a valid CIFAR-10 batch file")
    assert "fetch it again" in str(raised.value)


def test_cifar10_without_files_says_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="set TAAS_DATA_DIR") as raised:
        load_dataset(JobSpec(dataset="cifar10"), None)
    assert "cifar-10-batches-bin" in str(raised.value)
    ok, reason = available("cifar10", tmp_path)
    assert not ok
    assert str(tmp_path / "cifar-10-batches-bin") in reason
    assert "data_batch_1.bin" in reason
    assert "test_batch (the Python version)" in reason


# --- downloads -------------------------------------------------------------------------------


class FakeDownload:
    """Stands in for torchvision's download: records the call and writes a tiny copy."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, Path]] = []
        self.error = error

    def __call__(self, name: str, data_dir: Path) -> None:
        self.calls.append((name, data_dir))
        if self.error is not None:
            raise self.error
        if name == "cifar10":
            write_cifar_py(data_dir)  # torchvision extracts the Python version
        else:
            write_mnist(data_dir / dataset_files.TORCHVISION_FOLDERS[name] / "raw", gz=True)


@pytest.fixture
def download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeDownload:
    fake = FakeDownload()
    monkeypatch.setattr(builtin, "_torchvision_download", fake)
    monkeypatch.setattr(dataset_files, "SYSTEM_FASHION_MNIST", tmp_path / "no-system-copy")
    return fake


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_builtin_is_downloaded_once_when_allowed(
    tmp_path: Path, download: FakeDownload, name: str
) -> None:
    data_dir = tmp_path / "data"
    assert available(name, data_dir, allow_download=True) == (
        True,
        f"downloaded into {data_dir} on first use",
    )

    first = load_dataset(JobSpec(dataset=name), data_dir, allow_download=True)
    second = load_dataset(JobSpec(dataset=name), data_dir, allow_download=True)

    assert download.calls == [(name, data_dir)]
    assert torch.equal(first.train_x, second.train_x)
    assert first.info.train_size == (11 if name == "cifar10" else 20)
    assert available(name, data_dir, allow_download=True)[1] != (
        f"downloaded into {data_dir} on first use"
    )


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_builtin_is_not_downloaded_unless_allowed(
    tmp_path: Path, download: FakeDownload, name: str
) -> None:
    hint = f"set TAAS_ALLOW_DOWNLOAD=true to have it downloaded into {tmp_path}"

    with pytest.raises(DatasetUnavailable, match=hint):
        load_dataset(JobSpec(dataset=name), tmp_path)
    ok, reason = available(name, tmp_path)

    assert not ok
    assert hint in reason
    assert download.calls == []


def test_download_needs_a_data_dir(download: FakeDownload) -> None:
    with pytest.raises(DatasetUnavailable, match="set TAAS_DATA_DIR and TAAS_ALLOW_DOWNLOAD"):
        load_dataset(JobSpec(dataset="mnist"), None, allow_download=True)
    assert available("mnist", None, allow_download=True)[0] is False
    assert download.calls == []


def test_builtin_already_present_is_not_downloaded(tmp_path: Path, download: FakeDownload) -> None:
    write_cifar_bin(tmp_path)

    load_dataset(JobSpec(dataset="cifar10"), tmp_path, allow_download=True)

    assert download.calls == []


def test_failed_download_raises_dataset_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = FakeDownload(error=OSError("Network is unreachable"))
    monkeypatch.setattr(builtin, "_torchvision_download", failing)

    message = f"downloading cifar10 into {tmp_path} failed: Network is unreachable"
    with pytest.raises(DatasetUnavailable, match=message):
        load_dataset(JobSpec(dataset="cifar10"), tmp_path, allow_download=True)
    assert len(failing.calls) == 1


# --- uploaded datasets: the canonical file ---------------------------------------------------

CLASS_NAMES = ["cat", "dog", "eel"]


def canonical_tensors(
    x_dtype: torch.dtype = torch.uint8, shape: tuple[int, ...] = (2, 5, 4), test: bool = True
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tensors = {"train_x": torch.rand((12, *shape), generator=generator) * 255}
    tensors["train_y"] = torch.arange(12) % 3
    if test:
        tensors["test_x"] = torch.rand((6, *shape), generator=generator) * 255
        tensors["test_y"] = torch.tensor([2, 1, 0, 0, 1, 2])
    return {key: t.to(x_dtype) if key.endswith("_x") else t for key, t in tensors.items()}


def canonical_metadata(**overrides: str) -> dict[str, str]:
    metadata = {"taas_dataset": "1", "class_names": json.dumps(CLASS_NAMES)}
    metadata["source_format"] = "npz"
    return {**metadata, **overrides}


def write_canonical(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    save_file(tensors, str(path), metadata=canonical_metadata() if metadata is None else metadata)
    return path


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


# --- float data ------------------------------------------------------------------------------


def float_dataset(x: torch.Tensor) -> data.Dataset:
    info = DatasetInfo(
        name="f",
        shape=tuple(x.shape[1:]),
        num_classes=2,
        class_names=["a", "b"],
        train_size=len(x),
        test_size=0,
    )
    y = torch.arange(len(x)) % 2
    return data.Dataset(info, x, y, x[:0], y[:0])


def test_preprocess_for_float_data_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many chunks of 4 samples (12 values).
    monkeypatch.setattr("taas.worker.trainer.data.dataset.FLOAT_CHUNK_VALUES", 50)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((41, 3, 2, 2), generator=generator) * torch.tensor([1.0, 300.0, 1e-3]).view(
        1, 3, 1, 1
    ) + torch.tensor([5.0, -2000.0, 0.5]).view(1, 3, 1, 1)

    preprocess = preprocess_for(float_dataset(x))

    values = x.numpy().astype(np.float64)
    assert preprocess.scale == 1.0
    assert preprocess.mean == [float(np.float32(m)) for m in values.mean(axis=(0, 2, 3))]
    assert preprocess.std == [float(np.float32(s)) for s in values.std(axis=(0, 2, 3))]
    normalized = preprocess.apply(x)
    # float32 arithmetic: channel 2's spread is 1e-3 of its mean, so 1e-4 is as close as it gets.
    assert torch.allclose(normalized.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(normalized.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_preprocess_for_float_features_leaves_constant_ones_finite() -> None:
    x = torch.stack([torch.arange(10.0), torch.full((10,), 3.0)], dim=1).view(10, 2, 1, 1)

    preprocess = preprocess_for(float_dataset(x))

    assert preprocess.mean == [4.5, 3.0]
    assert preprocess.std == [pytest.approx(float(np.std(np.arange(10.0)))), 1.0]
    assert torch.isfinite(preprocess.apply(x)).all()


# --- holding out a test split ----------------------------------------------------------------


def test_split_holdout_is_seeded_disjoint_covering_and_sized() -> None:
    x = torch.arange(50).view(50, 1, 1, 1).float()  # each sample's value is its index
    y = torch.arange(50) % 5

    first = split_holdout(x, y, 0.2, seed=7)
    again = split_holdout(x, y, 0.2, seed=7)
    other = split_holdout(x, y, 0.2, seed=8)

    kept_x, kept_y, held_x, held_y = first
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(held_x, other[2])
    assert (len(kept_x), len(held_x)) == (40, 10)
    kept, held = set(kept_x.flatten().tolist()), set(held_x.flatten().tolist())
    assert kept.isdisjoint(held)
    assert kept | held == set(range(50))
    assert torch.equal(kept_y, (kept_x.flatten().long()) % 5)  # labels travel with samples
    assert torch.equal(held_y, (held_x.flatten().long()) % 5)
    assert kept_x.flatten().tolist() == sorted(kept)  # the original order is kept


def test_split_holdout_takes_each_class_in_proportion() -> None:
    y = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)

    _, _, _, held_y = split_holdout(torch.zeros(100, 1, 1, 1), y, 0.2, seed=0)

    assert torch.bincount(held_y, minlength=3).tolist() == [14, 4, 2]


@pytest.mark.parametrize(
    ("count", "fraction", "held"), [(2, 0.5, 1), (10, 0.01, 1), (10, 0.99, 9), (10, 0.25, 2)]
)
def test_split_holdout_holds_at_least_one_and_leaves_at_least_one(
    count: int, fraction: float, held: int
) -> None:
    kept_x, _, held_x, _ = split_holdout(
        torch.zeros(count, 1, 1, 1), torch.zeros(count, dtype=torch.int64), fraction, seed=0
    )

    assert (len(kept_x), len(held_x)) == (count - held, held)


@pytest.mark.parametrize(
    ("count", "fraction", "message"),
    [(1, 0.5, "need at least 2"), (10, 0.0, "fraction=0.0: "), (10, 1.0, "fraction=1.0: ")],
)
def test_split_holdout_refuses_impossible_splits(count: int, fraction: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_holdout(
            torch.zeros(count, 1, 1, 1), torch.zeros(count, dtype=torch.int64), fraction, seed=0
        )


def test_with_test_split_holds_out_only_when_there_is_no_test_split(tmp_path: Path) -> None:
    with_test = load_canonical(
        write_canonical(tmp_path / "a.safetensors", canonical_tensors()), "a"
    )
    without = load_canonical(
        write_canonical(tmp_path / "b.safetensors", canonical_tensors(test=False)), "b"
    )

    assert with_test_split(with_test, 0.25, seed=0) is with_test
    split = with_test_split(without, 0.25, seed=0)

    assert (split.info.train_size, split.info.test_size) == (9, 3)
    assert (len(split.train_y), len(split.test_y)) == (9, 3)
    assert split.test_x.shape == (3, 2, 5, 4)
    assert sorted(split.test_y.tolist()) == [0, 1, 2]  # one of each class
    expected = split_holdout(without.train_x, without.train_y, 0.25, seed=0)
    assert torch.equal(split.test_x, expected[2])
    assert torch.equal(split.train_x, expected[0])
