"""An .npz upload: arrays x and y, optionally x_test and y_test. Shapes, dtypes and lengths come
from the .npy headers and are checked before any data is decompressed; then samples become
(N, C, H, W) uint8 or float32 and labels (N,) int64."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib import format as npy_format

from taas.app.datasets.ingest.archives import entry_errors
from taas.app.datasets.ingest.common import (
    CanonicalDataset,
    IngestLimits,
    InvalidDataset,
    Labels,
    Samples,
    SampleShape,
    check_sample_counts,
    check_sample_values,
    check_two_classes,
    numbered_classes,
    preview,
)

NPZ_ARRAYS = ("x", "y", "x_test", "y_test")
CHANNEL_COUNTS = (1, 3, 4)


def is_npz(entries: list[zipfile.ZipInfo], filename: str) -> bool:
    # The name breaks the tie for a .npz that also holds something else.
    every_entry_npy = all(entry.filename.endswith(".npy") for entry in entries)
    return every_entry_npy or filename.lower().endswith(".npz")


@dataclass(frozen=True)
class _NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


def read_npz(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], limits: IngestLimits
) -> CanonicalDataset:
    """x, y and optional x_test, y_test; other arrays are ignored and never decompressed."""
    members = {entry.filename.removesuffix(".npy"): entry for entry in entries}
    _check_npz_members(members)
    headers = {key: _read_npy_header(archive, members[key]) for key in NPZ_ARRAYS if key in members}
    # Everything the headers decide is decided before any data is decompressed.
    sample_shape = _check_npz_headers(headers, limits)
    train_y = _npz_labels("y", _load_npy(archive, members["y"]), limits)
    test_y = None
    if "y_test" in headers:
        test_y = _npz_labels("y_test", _load_npy(archive, members["y_test"]), limits)
    check_two_classes({str(label) for label in np.unique(train_y).tolist()})
    train_x = _npz_samples("x", _load_npy(archive, members["x"]), sample_shape)
    test_x = None
    if test_y is not None:
        test_x = _npz_samples("x_test", _load_npy(archive, members["x_test"]), sample_shape)
    train_x, test_x = _same_dtype(train_x, test_x)
    return CanonicalDataset(
        train_x, train_y, test_x, test_y, numbered_classes(train_y, test_y), "npz"
    )


def _check_npz_members(members: dict[str, zipfile.ZipInfo]) -> None:
    for key in ("x", "y"):
        if key not in members:
            found = preview(sorted(members), 10)
            raise InvalidDataset(422, f"the npz has no {key!r} array (it holds {found})")
    if ("x_test" in members) != ("y_test" in members):
        present, missing = ("x_test", "y_test") if "x_test" in members else ("y_test", "x_test")
        raise InvalidDataset(422, f"the npz has {present} but no {missing}; give both or neither")


def _read_npy_header(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> _NpyHeader:
    """Shape and dtype from the .npy header alone, and proof that the entry holds exactly that
    much data: numpy allocates the declared shape before reading, so a lying header must not
    reach it."""
    with entry_errors(entry), archive.open(entry) as stream:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise InvalidDataset(
                422,
                f"zip entry {entry.filename!r} is .npy format {version[0]}.{version[1]}; "
                "versions 1.0 and 2.0 are accepted",
            )
        header_bytes = stream.tell()
    data_bytes = math.prod(shape) * dtype.itemsize
    # Pickled objects have no fixed size; they are refused by name once the header is checked.
    if not dtype.hasobject and header_bytes + data_bytes != entry.file_size:
        raise InvalidDataset(
            422,
            f"zip entry {entry.filename!r} holds {entry.file_size - header_bytes} bytes of data "
            f"but its header declares {shape} {dtype} ({data_bytes} bytes): truncated or corrupt",
        )
    return _NpyHeader(shape, dtype)


def _check_npz_headers(headers: dict[str, _NpyHeader], limits: IngestLimits) -> SampleShape:
    """Shapes, dtypes, lengths and counts of all arrays; returns the canonical (C, H, W)."""
    sample_shape = _npz_sample_shape("x", headers["x"])
    train_size = headers["x"].shape[0]
    _check_labels_header("y", headers["y"], "x", train_size)
    test_size = 0
    if "x_test" in headers:
        test_shape = _npz_sample_shape("x_test", headers["x_test"])
        if test_shape != sample_shape:
            raise InvalidDataset(
                422,
                f"x_test samples have shape {test_shape} but x samples have {sample_shape} "
                "(as C, H, W); both splits need the same sample shape",
            )
        test_size = headers["x_test"].shape[0]
        _check_labels_header("y_test", headers["y_test"], "x_test", test_size)
    check_sample_counts(train_size, test_size, limits)
    check_sample_values(sample_shape, limits)
    return sample_shape


def _npz_sample_shape(name: str, header: _NpyHeader) -> SampleShape:
    shape, dtype = header.shape, header.dtype
    _refuse_pickled(name, dtype)
    if dtype.kind not in "biuf":
        raise InvalidDataset(422, f"{name} has dtype {dtype}; expected integers or floats")
    if len(shape) not in (2, 3, 4):
        raise InvalidDataset(
            422,
            f"{name} has shape {shape}; expected (N, D) feature vectors, (N, H, W) grayscale "
            "images, or (N, H, W, C) / (N, C, H, W) images",
        )
    if shape[0] == 0:
        raise InvalidDataset(422, f"{name} has no samples (shape {shape})")
    if 0 in shape[1:]:
        raise InvalidDataset(422, f"{name} has empty samples (shape {shape})")
    return _sample_shape(name, shape)


def _sample_shape(name: str, shape: tuple[int, ...]) -> SampleShape:
    """(N, D) -> (D, 1, 1); (N, H, W) -> (1, H, W); (N, H, W, C) or (N, C, H, W) -> (C, H, W)."""
    if len(shape) == 2:
        return (shape[1], 1, 1)
    if len(shape) == 3:
        return (1, shape[1], shape[2])
    if _is_channels_last(shape):
        return (shape[3], shape[1], shape[2])
    if shape[1] in CHANNEL_COUNTS:
        return (shape[1], shape[2], shape[3])
    raise InvalidDataset(
        422,
        f"{name} has shape {shape}: cannot tell the channel axis; expected 1, 3 or 4 channels "
        "last (N, H, W, C) or second (N, C, H, W)",
    )


def _is_channels_last(shape: tuple[int, ...]) -> bool:
    # When both axes could be channels (N, 3, 32, 3), channels last wins: it is what numpy,
    # PIL and Keras produce.
    return len(shape) == 4 and shape[3] in CHANNEL_COUNTS


def _check_labels_header(
    name: str, header: _NpyHeader, samples_name: str, sample_count: int
) -> None:
    shape, dtype = header.shape, header.dtype
    _refuse_pickled(name, dtype)
    if dtype.kind not in "iu":
        raise InvalidDataset(422, f"{name} has dtype {dtype}: labels must be integers")
    # (N, 1) is how Keras ships labels (CIFAR-10); accept it as (N,).
    if len(shape) not in (1, 2) or shape[1:] not in ((), (1,)):
        raise InvalidDataset(422, f"{name} has shape {shape}; expected (N,) labels")
    if shape[0] != sample_count:
        raise InvalidDataset(
            422, f"{name} has {shape[0]} labels for {sample_count} samples in {samples_name}"
        )


def _refuse_pickled(name: str, dtype: np.dtype[Any]) -> None:
    if dtype.hasobject:
        raise InvalidDataset(
            422,
            f"{name} is an array of pickled Python objects (dtype {dtype}); pickles are never "
            "loaded: save numeric arrays",
        )


def _load_npy(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> npt.NDArray[Any]:
    # The header was checked against the entry's size, so this allocates what the caps allowed.
    with entry_errors(entry), archive.open(entry) as stream:
        loaded: npt.NDArray[Any] = np.load(stream, allow_pickle=False)
    return loaded


def _npz_labels(name: str, y: npt.NDArray[Any], limits: IngestLimits) -> Labels:
    """(N,) or (N, 1) integers -> (N,) int64, each in [0, max_classes)."""
    y = y.reshape(-1)
    lowest, highest = int(y.min()), int(y.max())
    if lowest < 0:
        index = int(np.argmax(y < 0))
        raise InvalidDataset(422, f"{name}[{index}] is {y[index]}: labels must be >= 0")
    if highest >= limits.max_classes:
        index = int(np.argmax(y))
        raise InvalidDataset(
            422,
            f"{name}[{index}] is {highest}: at most {limits.max_classes} classes are allowed "
            f"(labels 0 to {limits.max_classes - 1})",
        )
    return y.astype(np.int64)


def _npz_samples(name: str, x: npt.NDArray[Any], sample_shape: SampleShape) -> Samples:
    """(N, D) | (N, H, W) | (N, H, W, C) | (N, C, H, W) -> (N, C, H, W) uint8 or float32."""
    if _is_channels_last(x.shape):
        x = x.transpose(0, 3, 1, 2)
    x = x.reshape(len(x), *sample_shape)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x, dtype=np.uint8)
    # float64 beyond float32's range becomes inf here, and is refused with the other infs.
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(x, dtype=np.float32)
    _check_finite(name, converted)
    return converted


def _check_finite(name: str, x: npt.NDArray[np.float32]) -> None:
    finite = np.isfinite(x).reshape(len(x), -1).all(axis=1)  # (N,)
    if finite.all():
        return
    index = int(np.argmin(finite))
    if np.isnan(x[index]).any():
        raise InvalidDataset(422, f"{name} has NaN in sample {index}; features must be finite")
    raise InvalidDataset(
        422,
        f"{name} has an infinite value in sample {index} (inf, or beyond float32's range); "
        "features must be finite",
    )


def _same_dtype(train_x: Samples, test_x: Samples | None) -> tuple[Samples, Samples | None]:
    # One split uint8 and the other not: both become float32, values unchanged.
    if test_x is None or test_x.dtype == train_x.dtype:
        return train_x, test_x
    return train_x.astype(np.float32), test_x.astype(np.float32)
