"""Datasets for the trainer: each split held whole as a tensor, normalized per batch later.

Built-in images stay uint8 until a batch is drawn: that is what lets a whole dataset live on the
device (Fashion-MNIST's 60k training images are 47 MB as uint8, four times that as float32).
Uploaded datasets arrive in a canonical safetensors file, as uint8 images or float32 values.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import math
import pickle
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import torch
from safetensors import SafetensorError, safe_open

from taas.app.spec import BUILTIN_DATASETS, DatasetInfo, JobSpec, SyntheticOptions, dataset_info
from taas.worker.datasets.files import (
    CIFAR_BIN_FOLDER,
    DOWNLOADABLE,
    IDX_FILES,
    cifar_batch_paths,
    download_hint,
    find_folder,
    idx_path,
)

# Re-exported: the worker and the tests import these from the trainer's data module.
from taas.worker.datasets.files import DatasetUnavailable as DatasetUnavailable
from taas.worker.datasets.files import available as available

IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one MNIST-style files use
CIFAR_PIXELS = 3 * 32 * 32  # per image: 1024 red, then 1024 green, then 1024 blue, row-major
CIFAR_RECORD = 1 + CIFAR_PIXELS  # a binary record: one label byte, then the pixels

# The canonical file the API writes for an uploaded dataset: format version and tensor names.
CANONICAL_VERSION = "1"
CANONICAL_X_DTYPES = {"U8": torch.uint8, "F32": torch.float32}  # safetensors header codes
CANONICAL_TENSORS = {"train_x", "train_y", "test_x", "test_y"}

# Synthetic noise is generated this many samples at a time, so float32 scratch stays small.
SYNTHETIC_CHUNK = 4096
# Float statistics are computed over chunks of about this many values (32 MB as float64).
FLOAT_CHUNK_VALUES = 1 << 22

Uint8Array = npt.NDArray[np.uint8]
Int64Array = npt.NDArray[np.int64]


@dataclass
class Dataset:
    info: DatasetInfo
    train_x: torch.Tensor  # (N, C, H, W) uint8 images, or float32 values (features: (N, D, 1, 1))
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor  # (M, C, H, W), train_x's dtype; M is 0 when there is no test split
    test_y: torch.Tensor  # (M,) int64


@dataclass(frozen=True)
class Preprocess:
    """x = (stored_x * scale - mean[c]) / std[c], per channel c.

    scale is 1/255 for uint8 pixels (so mean and std are in [0, 1] units, as torchvision's are)
    and 1 for float32 data.
    """

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

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 or float32 -> (N, C, H, W) float32 on the same device."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (x.to(torch.float32) * self.scale - mean) / std


def preprocess_for(dataset: Dataset) -> Preprocess:
    """Per-channel mean and std of the training split (uint8 pixels scaled to [0, 1] first)."""
    x = dataset.train_x  # (N, C, H, W)
    if x.dtype == torch.float32:
        means, stds = _float_mean_std(x)
        return Preprocess(scale=1.0, mean=[_to_float32(m) for m in means], std=_divisors(stds))
    if x.dtype != torch.uint8:
        raise ValueError(f"train_x is {x.dtype}; the trainer reads uint8 or float32")
    pixel_stats = [_pixel_mean_std(x[:, channel]) for channel in range(x.shape[1])]
    means = [_to_float32(mean / 255.0) for mean, _ in pixel_stats]
    return Preprocess(scale=1.0 / 255.0, mean=means, std=_divisors(s / 255 for _, s in pixel_stats))


def _divisors(stds: Iterable[float]) -> list[float]:
    # A constant channel has std 0 (or one float32 cannot tell from 0): dividing by 1 keeps it
    # finite, and it carries no signal anyway.
    return [std32 if (std32 := _to_float32(std)) > 0 else 1.0 for std in stds]


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


def _float_mean_std(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std of (N, C, H, W) float32, summed in float64.

    Two passes (sum, then squared deviations from the mean) for accuracy, each over chunks of
    samples: a float64 copy of the whole split would be twice its size again.
    """
    channels = x.shape[1]
    count = x.numel() // channels  # values per channel
    sums = torch.zeros(channels, dtype=torch.float64, device=x.device)
    for chunk in _sample_chunks(x):
        sums += chunk.to(torch.float64).sum(dim=(0, 2, 3))
    mean = sums / count  # (C,)
    squares = torch.zeros_like(sums)
    for chunk in _sample_chunks(x):
        squares += (chunk.to(torch.float64) - mean.view(1, -1, 1, 1)).square().sum(dim=(0, 2, 3))
    return mean.tolist(), (squares / count).sqrt().tolist()


def _sample_chunks(x: torch.Tensor) -> list[torch.Tensor]:
    """Views of (N, ...) x, each of about FLOAT_CHUNK_VALUES values (at least one sample)."""
    rows = max(FLOAT_CHUNK_VALUES // max(math.prod(x.shape[1:]), 1), 1)
    return [x[start : start + rows] for start in range(0, len(x), rows)]


def _to_float32(value: float) -> float:
    # Rounded to float32 so that model.json holds exactly the numbers apply() computes with.
    return float(np.float32(value))


# --- built-in datasets ------------------------------------------------------------------------


def load_dataset(spec: JobSpec, data_dir: Path | None, allow_download: bool = False) -> Dataset:
    """The built-in dataset the spec names, or DatasetUnavailable saying why not.

    With ``allow_download`` and a data dir, a missing dataset is downloaded into it first.
    """
    name = spec.dataset
    if name not in BUILTIN_DATASETS:
        raise DatasetUnavailable(
            f"dataset {name!r} is not built in; this trainer loads {', '.join(BUILTIN_DATASETS)}"
        )
    info = dataset_info(spec)
    if name == "synthetic":
        return synthetic_dataset(info, spec.dataset_options or SyntheticOptions())
    folder = _find_or_download(name, data_dir, allow_download)
    if name == "cifar10":
        return _load_cifar_dataset(info, folder)
    return _load_idx_dataset(info, folder)


def _find_or_download(name: str, data_dir: Path | None, allow_download: bool) -> Path:
    try:
        return find_folder(name, data_dir)
    except DatasetUnavailable as missing:
        if not allow_download or data_dir is None:
            raise DatasetUnavailable(f"{missing}{download_hint(data_dir)}") from None
    download_builtin(name, data_dir)
    return find_folder(name, data_dir)


def download_builtin(name: str, data_dir: Path) -> None:
    """Download `name` into data_dir with torchvision, which writes the layout find_folder reads.

    A lock file serializes workers sharing the data dir: one downloads, the others then find it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / f".{name}.download-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if _has_files(name, data_dir):
            return  # another worker downloaded it while this one waited
        try:
            _torchvision_download(name, data_dir)
        except (OSError, RuntimeError) as error:  # torchvision's errors for a failed fetch
            message = f"downloading {name} into {data_dir} failed: {error}"
            raise DatasetUnavailable(message) from error


def _has_files(name: str, data_dir: Path) -> bool:
    try:
        find_folder(name, data_dir)
    except DatasetUnavailable:
        return False
    return True


def _torchvision_download(name: str, data_dir: Path) -> None:
    # Imported here: only a download needs torchvision.datasets (and the network).
    from torchvision import datasets

    dataset_class = getattr(datasets, DOWNLOADABLE[name])
    dataset_class(root=data_dir, download=True)


def _corrupt(path: Path, problem: str, kind: str = "IDX") -> DatasetUnavailable:
    message = f"{path} is not a valid {kind} file: {problem}; delete it and fetch it again"
    return DatasetUnavailable(message)


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


def _load_idx_dataset(info: DatasetInfo, folder: Path) -> Dataset:
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


# --- CIFAR-10 batches (binary and Python versions) ---------------------------------------------


def _load_cifar_dataset(info: DatasetInfo, folder: Path) -> Dataset:
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
        raise _corrupt(path, f"unreadable ({error})", "CIFAR-10 batch") from error
    if len(raw) % CIFAR_RECORD:
        problem = f"{len(raw)} bytes is not a whole number of {CIFAR_RECORD}-byte records"
        raise _corrupt(path, problem, "CIFAR-10 batch")
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
        raise _corrupt(path, f"cannot unpickle it ({error})", "CIFAR-10 batch") from error
    if not isinstance(batch, dict):
        raise _corrupt(path, f"it holds a {type(batch).__name__}, not a dict", "CIFAR-10 batch")
    rows, labels = _batch_entry(batch, "data"), _batch_entry(batch, "labels")
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2:
        problem = f"'data' is {_describe(rows)}, expected a uint8 array of shape (n, 3072)"
        raise _corrupt(path, problem, "CIFAR-10 batch")
    if not isinstance(labels, list) or not all(type(label) is int for label in labels):
        problem = f"'labels' is {_describe(labels)}, expected a list of ints"
        raise _corrupt(path, problem, "CIFAR-10 batch")
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
        raise _corrupt(path, f"rows of {rows.shape[1:]} pixels, expected 3072", "CIFAR-10 batch")
    if len(rows) == 0:
        raise _corrupt(path, "it holds no images", "CIFAR-10 batch")
    if len(labels) != len(rows):
        problem = f"{len(labels)} labels for {len(rows)} images"
        raise _corrupt(path, problem, "CIFAR-10 batch")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        problem = f"labels span {low}..{high}, expected 0..{num_classes - 1}"
        raise _corrupt(path, problem, "CIFAR-10 batch")
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


# --- uploaded datasets: the canonical safetensors file -----------------------------------------


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
    if x.dtype == torch.float32 and not all(bool(c.isfinite().all()) for c in _sample_chunks(x)):
        raise _invalid_canonical(path, f"{split}_x holds NaN or infinite values")


# --- holding out a test split ------------------------------------------------------------------


def split_holdout(
    x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(kept_x, kept_y, held_x, held_y): round(fraction * N) samples held out (at least 1, and
    leaving at least 1), each class in proportion to its size as near as whole samples allow.

    x (N, ...) and y (N,) int64 on the CPU. The same arguments give the same split every call;
    both parts keep the samples' original order.
    """
    count = len(y)
    if count < 2:
        raise ValueError(f"cannot hold out part of {count} sample(s): need at least 2")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction!r}: expected 0 < fraction < 1")
    held_count = min(max(round(fraction * count), 1), count - 1)
    held = torch.zeros(count, dtype=torch.bool)  # (N,)
    held[_stratified_order(y, seed)[:held_count]] = True
    return x[~held], y[~held], x[held], y[held]


def _stratified_order(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded permutation of range(N) whose every prefix holds each class in proportion.

    Taken in a random order, the i-th sample of a class of size n sorts at (i + 0.5) / n: a
    prefix of k samples then holds about k * n / N of that class.
    """
    shuffled = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))  # (N,)
    labels = y[shuffled]  # (N,)
    sizes = torch.bincount(labels)  # (K,)
    grouped = torch.sort(labels, stable=True).indices  # (N,) by class, random within a class
    class_start = torch.cumsum(sizes, 0) - sizes  # (K,) where each class begins in `grouped`
    rank = torch.empty_like(labels)  # (N,) position within its class
    rank[grouped] = torch.arange(len(y)) - class_start[labels[grouped]]
    position = (rank.to(torch.float64) + 0.5) / sizes[labels].to(torch.float64)
    return shuffled[torch.sort(position, stable=True).indices]


def with_test_split(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """`dataset` itself when it has a test split; else one whose test split is a seeded,
    stratified holdout of `fraction` of its training split (see split_holdout)."""
    if len(dataset.test_y) > 0:
        return dataset
    train_x, train_y, test_x, test_y = split_holdout(
        dataset.train_x, dataset.train_y, fraction, seed
    )
    sizes = {"train_size": len(train_y), "test_size": len(test_y)}
    return Dataset(dataset.info.model_copy(update=sizes), train_x, train_y, test_x, test_y)
