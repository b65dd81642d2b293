"""Tiny dataset files in each format the readers take: IDX, CIFAR-10 batches (binary, and
Python 2 pickles) and the canonical safetensors file of an upload."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

# --- IDX files -------------------------------------------------------------------------------

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


# --- CIFAR-10 batches ------------------------------------------------------------------------

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


# --- the canonical file of an upload ---------------------------------------------------------

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
