"""Datasets for the trainer: each split held whole as uint8 tensors, normalized per batch later.

Keeping pixels as uint8 until a batch is drawn is what lets a whole dataset live on the device
(Fashion-MNIST's 60k training images are 47 MB as uint8, four times that as float32).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from app.spec import BUILTIN_DATASETS, DatasetInfo, JobSpec, SyntheticOptions, dataset_info

# Debian's dataset-fashion-mnist package installs the IDX files here.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# torchvision's folder names under the data dir: <data_dir>/<folder>/raw/<idx files>.
TORCHVISION_FOLDERS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}

# The four IDX files of an MNIST-style dataset, each with and without ".gz".
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one MNIST-style files use

# Synthetic noise is generated this many samples at a time, so float32 scratch stays small.
SYNTHETIC_CHUNK = 4096

Uint8Array = npt.NDArray[np.uint8]


class DatasetUnavailable(Exception):
    """The dataset cannot be loaded on this server; the message says what to do about it."""


@dataclass
class Dataset:
    info: DatasetInfo
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor  # (M, C, H, W) uint8
    test_y: torch.Tensor  # (M,) int64


@dataclass(frozen=True)
class Preprocess:
    """x = (uint8_pixels * scale - mean[c]) / std[c], per channel c."""

    scale: float
    mean: list[float]
    std: list[float]

    def to_json(self) -> dict[str, float | list[float]]:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Preprocess:
        scale, mean, std = data["scale"], data["mean"], data["std"]
        if not isinstance(scale, int | float) or not isinstance(mean, list):
            raise ValueError(f"preprocess {data!r} is not a Preprocess.to_json() dict")
        if not isinstance(std, list) or len(mean) != len(std):
            raise ValueError(f"preprocess {data!r} is not a Preprocess.to_json() dict")
        return cls(scale=float(scale), mean=[float(m) for m in mean], std=[float(s) for s in std])

    def apply(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 -> (N, C, H, W) float32 on the same device."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x_uint8.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x_uint8.device).view(1, -1, 1, 1)
        return (x_uint8.to(torch.float32) * self.scale - mean) / std


def preprocess_for(dataset: Dataset) -> Preprocess:
    """Per-channel mean and std of the training split, after scaling pixels to [0, 1]."""
    means, stds = [], []
    for channel in range(dataset.train_x.shape[1]):
        mean, std = _pixel_mean_std(dataset.train_x[:, channel])
        means.append(_to_float32(mean / 255.0))
        # A constant channel has std 0; dividing by 1 keeps it finite (it carries no signal).
        stds.append(_to_float32(std / 255.0) if std > 0 else 1.0)
    return Preprocess(scale=1.0 / 255.0, mean=means, std=stds)


def _pixel_mean_std(pixels: torch.Tensor) -> tuple[float, float]:
    """Exact mean and population std of uint8 pixels, from a 256-bin histogram.

    The histogram reads the uint8 pixels as they are: no float or int64 copy of the data (60k x 784
    pixels would be 376 MB as float64).
    """
    counts = torch.bincount(pixels.reshape(-1), minlength=256).to(torch.float64)  # (256,)
    values = torch.arange(256, dtype=torch.float64)
    total = float(counts.sum())
    mean = float((counts * values).sum()) / total
    variance = float((counts * values.square()).sum()) / total - mean * mean
    return mean, math.sqrt(max(variance, 0.0))


def _to_float32(value: float) -> float:
    # Rounded to float32 so that model.json holds exactly the numbers apply() computes with.
    return float(np.float32(value))


def load_dataset(spec: JobSpec, data_dir: Path | None) -> Dataset:
    """The built-in dataset the spec names, or DatasetUnavailable saying why not."""
    name = spec.dataset
    if name not in BUILTIN_DATASETS:
        raise DatasetUnavailable(
            f"dataset {name!r} is not built in; this trainer loads {', '.join(BUILTIN_DATASETS)}"
        )
    info = dataset_info(spec)
    if name == "synthetic":
        return synthetic_dataset(info, spec.dataset_options or SyntheticOptions())
    if name == "cifar10":
        raise DatasetUnavailable("cifar10 is not available on this server yet")
    return _load_idx_dataset(info, _find_idx_folder(name, data_dir))


def available(name: str, data_dir: Path | None) -> tuple[bool, str]:
    """Whether load_dataset can load the built-in dataset `name`, and why (not)."""
    if name == "synthetic":
        return True, "generated from the job's dataset_options"
    if name == "cifar10":
        return False, "cifar10 is not available on this server yet"
    if name not in TORCHVISION_FOLDERS:
        return False, f"dataset {name!r} is not built in; try one of {', '.join(BUILTIN_DATASETS)}"
    try:
        folder = _find_idx_folder(name, data_dir)
    except DatasetUnavailable as error:
        return False, str(error)
    return True, f"IDX files in {folder}"


# --- synthetic --------------------------------------------------------------------------------


def synthetic_dataset(info: DatasetInfo, options: SyntheticOptions) -> Dataset:
    """One random prototype image per class; samples are prototype + gaussian noise, seeded.

    Noise std is `options.noise` times the full pixel range (255), so the default 0.6 buries each
    pixel but leaves every class easy to find from the whole image.
    """
    rng = np.random.default_rng(options.seed)
    prototypes = rng.integers(0, 256, size=(options.num_classes, *options.shape), dtype=np.uint8)
    train_x, train_y = _noisy_samples(rng, prototypes, options.train_size, options.noise)
    test_x, test_y = _noisy_samples(rng, prototypes, options.test_size, options.noise)
    return Dataset(info, train_x, train_y, test_x, test_y)


def _noisy_samples(
    rng: np.random.Generator, prototypes: Uint8Array, count: int, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, C, H, W) uint8 images and (count,) int64 labels, classes balanced and shuffled."""
    num_classes = prototypes.shape[0]
    labels = rng.permutation(np.arange(count, dtype=np.int64) % num_classes)
    images = np.empty((count, *prototypes.shape[1:]), dtype=np.uint8)
    for start in range(0, count, SYNTHETIC_CHUNK):
        chunk = labels[start : start + SYNTHETIC_CHUNK]
        gaussian = rng.standard_normal((len(chunk), *prototypes.shape[1:]), dtype=np.float32)
        pixels = prototypes[chunk].astype(np.float32) + gaussian * np.float32(noise * 255.0)
        images[start : start + len(chunk)] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(labels)


# --- IDX files (MNIST, Fashion-MNIST) ----------------------------------------------------------


def _idx_folders(name: str, data_dir: Path | None) -> list[Path]:
    """Where to look for `name`'s IDX files, in order of preference."""
    folders = []
    if data_dir is not None:
        folders.append(data_dir / TORCHVISION_FOLDERS[name] / "raw")
    if name == "fashion_mnist":
        folders.append(SYSTEM_FASHION_MNIST)
    return folders


def _idx_path(folder: Path, stem: str) -> Path | None:
    # torchvision keeps both the .gz and its extracted copy; the extracted one reads faster.
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_idx_folder(name: str, data_dir: Path | None) -> Path:
    """The first folder that holds all four IDX files of `name`."""
    folders = _idx_folders(name, data_dir)
    for folder in folders:
        if all(_idx_path(folder, stem) is not None for stem in IDX_FILES.values()):
            return folder
    looked = ", ".join(str(folder) for folder in folders) or "nowhere (no data dir is configured)"
    hint = f"put {', '.join(f'{stem}.gz' for stem in IDX_FILES.values())} in one of them"
    if data_dir is None:
        subfolder = TORCHVISION_FOLDERS[name]
        hint += f", after setting TAAS_DATA_DIR (they go in <data dir>/{subfolder}/raw)"
    if name == "fashion_mnist":
        hint += ", or install Debian's dataset-fashion-mnist package"
    raise DatasetUnavailable(f"{name} IDX files not found; looked in {looked}; {hint}")


def _load_idx_dataset(info: DatasetInfo, folder: Path) -> Dataset:
    paths = {key: _idx_path(folder, stem) or folder / stem for key, stem in IDX_FILES.items()}
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
        raise _corrupt(images_path, "it holds no images")
    if images.shape[1:] != info.shape[1:]:
        raise _corrupt(images_path, f"images are {images.shape[1:]}, expected {info.shape[1:]}")
    if len(labels) != len(images):
        raise _corrupt(labels_path, f"{len(labels)} labels for {len(images)} images")
    if len(labels) and int(labels.max()) >= info.num_classes:
        raise _corrupt(labels_path, f"label {int(labels.max())} >= {info.num_classes} classes")
    x = torch.from_numpy(images).unsqueeze(1)  # (N, 1, H, W): one channel
    return x, torch.from_numpy(labels.astype(np.int64))


def _read_idx(path: Path, ndim: int) -> Uint8Array:
    """The unsigned-byte array an IDX file holds (gzip-compressed if its name ends in .gz)."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise _corrupt(path, f"unreadable ({error})") from error
    return _parse_idx(raw, path, ndim)


def _parse_idx(raw: bytes, path: Path, ndim: int) -> Uint8Array:
    # Header: two zero bytes, a type byte, a dimension count, then one big-endian uint32 per dim.
    header_size = 4 + 4 * ndim
    expected_magic = (IDX_UBYTE << 8) | ndim
    if len(raw) < header_size:
        raise _corrupt(path, f"{len(raw)} bytes is shorter than the IDX header")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        raise _corrupt(path, f"magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    if len(raw) - header_size != math.prod(dims):
        found = len(raw) - header_size
        raise _corrupt(path, f"header says {dims} = {math.prod(dims)} bytes, file holds {found}")
    # copy(): frombuffer views immutable bytes, and torch must own writable memory.
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def _corrupt(path: Path, problem: str) -> DatasetUnavailable:
    message = f"{path} is not a valid IDX file: {problem}; delete it and fetch it again"
    return DatasetUnavailable(message)
