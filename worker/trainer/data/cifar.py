"""CIFAR-10: its batches in the binary version or the Python (pickled) one, read without ever
running code a pickle names."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from taas.app.spec import DatasetInfo
from taas.worker.datasets.files import CIFAR_BIN_FOLDER, cifar_batch_paths
from taas.worker.trainer.data.dataset import Dataset, Int64Array, Uint8Array, corrupt_file

CIFAR_PIXELS = 3 * 32 * 32  # per image: 1024 red, then 1024 green, then 1024 blue, row-major
CIFAR_RECORD = 1 + CIFAR_PIXELS  # a binary record: one label byte, then the pixels


def load_cifar_dataset(info: DatasetInfo, folder: Path) -> Dataset:
    binary = folder.name == CIFAR_BIN_FOLDER
    read = _read_cifar_binary if binary else _read_cifar_pickle
    paths = cifar_batch_paths(folder, ".bin" if binary else "")
    batches = [_checked_cifar_batch(path, *read(path), info.num_classes) for path in paths]
    train_x, train_y = _stack_cifar(batches[:-1])
    test_x, test_y = _stack_cifar(batches[-1:])
    sized = info.model_copy(update={"train_size": len(train_y), "test_size": len(test_y)})
    return Dataset(sized, train_x, train_y, test_x, test_y)


def _stack_cifar(batches: list[tuple[Uint8Array, Int64Array]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 32, 32) uint8 and (N,) int64 from batches of (n, 3072) pixel rows and labels."""
    # concatenate copies into memory torch can own (the rows may view read-only file bytes).
    pixels = np.concatenate([rows for rows, _ in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([labels for _, labels in batches])
    return torch.from_numpy(pixels), torch.from_numpy(labels)


def _read_cifar_binary(path: Path) -> tuple[Uint8Array, Int64Array]:
    """(n, 3072) pixel rows and (n,) labels of a binary batch: n records of 1 + 3072 bytes."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise corrupt_file(path, f"unreadable ({error})", "CIFAR-10 batch") from error
    if len(raw) % CIFAR_RECORD:
        problem = f"{len(raw)} bytes is not a whole number of {CIFAR_RECORD}-byte records"
        raise corrupt_file(path, problem, "CIFAR-10 batch")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)  # (n, 3073)
    return records[:, 1:], records[:, 0].astype(np.int64)


def _read_cifar_pickle(path: Path) -> tuple[Uint8Array, Int64Array]:
    """(n, 3072) pixel rows and (n,) labels of a Python batch: a pickled dict (Python 2's)."""
    try:
        with path.open("rb") as file:
            batch = _load_array_pickle(file)
    # A damaged pickle fails in many ways (UnpicklingError, EOFError, ValueError or TypeError
    # from numpy's array state, ...): each means the file cannot be used.
    except Exception as error:
        raise corrupt_file(path, f"cannot unpickle it ({error})", "CIFAR-10 batch") from error
    if not isinstance(batch, dict):
        raise corrupt_file(path, f"it holds a {type(batch).__name__}, not a dict", "CIFAR-10 batch")
    rows, labels = _batch_entry(batch, "data"), _batch_entry(batch, "labels")
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2:
        problem = f"'data' is {_describe(rows)}, expected a uint8 array of shape (n, 3072)"
        raise corrupt_file(path, problem, "CIFAR-10 batch")
    if not isinstance(labels, list) or not all(type(label) is int for label in labels):
        problem = f"'labels' is {_describe(labels)}, expected a list of ints"
        raise corrupt_file(path, problem, "CIFAR-10 batch")
    return rows, np.array(labels, dtype=np.int64)


def _batch_entry(batch: dict[Any, Any], key: str) -> object:
    # Python 2 pickled str keys, which read back as bytes; a re-pickled batch may hold str ones.
    return batch.get(key.encode(), batch.get(key))


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return "missing" if value is None else f"a {type(value).__name__}"


def _checked_cifar_batch(
    path: Path, rows: Uint8Array, labels: Int64Array, num_classes: int
) -> tuple[Uint8Array, Int64Array]:
    """The batch's (n, 3072) rows and (n,) labels, once they are known to fit together."""
    if rows.shape[1:] != (CIFAR_PIXELS,):
        problem = f"rows of {rows.shape[1:]} pixels, expected 3072"
        raise corrupt_file(path, problem, "CIFAR-10 batch")
    if len(rows) == 0:
        raise corrupt_file(path, "it holds no images", "CIFAR-10 batch")
    if len(labels) != len(rows):
        problem = f"{len(labels)} labels for {len(rows)} images"
        raise corrupt_file(path, problem, "CIFAR-10 batch")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        problem = f"labels span {low}..{high}, expected 0..{num_classes - 1}"
        raise corrupt_file(path, problem, "CIFAR-10 batch")
    return rows, labels


def _numpy_reconstruct() -> object:
    """The function numpy pickles arrays with, taken from numpy itself: it lives in
    numpy.core.multiarray in 1.x and numpy._core.multiarray in 2.x, and importing the other
    version's module would warn or fail."""
    reduced = np.empty(0).__reduce__()
    assert isinstance(reduced, tuple)
    return reduced[0]


# The only globals a CIFAR-10 batch refers to: numpy's array reconstruction. The real files were
# pickled by numpy 1.x (numpy.core); numpy 2 writes numpy._core.
_RECONSTRUCT = _numpy_reconstruct()
CIFAR_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Reads dicts, lists, strings, numbers and numpy arrays, and refuses every other global: a
    crafted batch cannot make loading call os.system (or anything else)."""

    def find_class(self, module: str, name: str) -> Any:
        found = CIFAR_PICKLE_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: a CIFAR-10 batch refers to numpy arrays only"
            )
        return found


def _load_array_pickle(file: BinaryIO) -> object:
    # encoding="bytes": Python 2 pickled the batches, and its str (keys, the array bytes) must
    # read back as bytes. The unpickler refuses anything but numpy arrays (see find_class).
    return _ArrayOnlyUnpickler(file, encoding="bytes").load()
