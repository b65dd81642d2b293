"""CIFAR-10 from its binary or Python batches, damaged batches, and pickles that name code."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from taas.app.spec import JobSpec
from taas.worker.trainer.data import Dataset, DatasetUnavailable, available, load_dataset
from tests.worker.trainer.data.writers import (
    KNOWN_PIXEL,
    CifarBatches,
    python2_pickle,
    write_cifar_bin,
    write_cifar_py,
)


def assert_cifar_matches(dataset: Dataset, batches: CifarBatches) -> None:
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
