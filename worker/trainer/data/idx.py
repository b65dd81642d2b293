"""MNIST and Fashion-MNIST: IDX files (plain or gzip-compressed) in torchvision's layout."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from taas.app.spec import DatasetInfo
from taas.worker.datasets.files import IDX_FILES, idx_path
from taas.worker.trainer.data.dataset import Dataset, Uint8Array, corrupt_file

IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one MNIST-style files use


def load_idx_dataset(info: DatasetInfo, folder: Path) -> Dataset:
    paths = {key: idx_path(folder, stem) or folder / stem for key, stem in IDX_FILES.items()}
    train_x, train_y = _images_and_labels(paths["train_x"], paths["train_y"], info)
    test_x, test_y = _images_and_labels(paths["test_x"], paths["test_y"], info)
    sized = info.model_copy(update={"train_size": len(train_y), "test_size": len(test_y)})
    return Dataset(sized, train_x, train_y, test_x, test_y)


def _images_and_labels(
    images_path: Path, labels_path: Path, info: DatasetInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, H, W) uint8 and (N,) int64, checked against each other and against `info`."""
    images = _read_idx(images_path, ndim=3)  # (N, H, W)
    labels = _read_idx(labels_path, ndim=1)  # (N,)
    if len(images) == 0:
        raise corrupt_file(images_path, "it holds no images")
    if images.shape[1:] != info.shape[1:]:
        raise corrupt_file(images_path, f"images are {images.shape[1:]}, expected {info.shape[1:]}")
    if len(labels) != len(images):
        raise corrupt_file(labels_path, f"{len(labels)} labels for {len(images)} images")
    if len(labels) and int(labels.max()) >= info.num_classes:
        raise corrupt_file(labels_path, f"label {int(labels.max())} >= {info.num_classes} classes")
    x = torch.from_numpy(images).unsqueeze(1)  # (N, 1, H, W): one channel
    return x, torch.from_numpy(labels.astype(np.int64))


def _read_idx(path: Path, ndim: int) -> Uint8Array:
    """The unsigned-byte array an IDX file holds (gzip-compressed if its name ends in .gz)."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise corrupt_file(path, f"unreadable ({error})") from error
    return _parse_idx(raw, path, ndim)


def _parse_idx(raw: bytes, path: Path, ndim: int) -> Uint8Array:
    # Header: two zero bytes, a type byte, a dimension count, then one big-endian uint32 per dim.
    header_size = 4 + 4 * ndim
    expected_magic = (IDX_UBYTE << 8) | ndim
    if len(raw) < header_size:
        raise corrupt_file(path, f"{len(raw)} bytes is shorter than the IDX header")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        raise corrupt_file(path, f"magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    if len(raw) - header_size != math.prod(dims):
        found = len(raw) - header_size
        problem = f"header says {dims} = {math.prod(dims)} bytes, file holds {found}"
        raise corrupt_file(path, problem)
    # copy(): frombuffer views immutable bytes, and torch must own writable memory.
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims).copy()
