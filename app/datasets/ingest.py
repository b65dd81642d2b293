"""Uploaded training data -> one canonical, validated dataset the trainer reads.

An upload is an .npz (arrays x, y and optional x_test, y_test), a CSV with a label column, or a zip
of PNG/JPEG images in one folder per class. Nothing in it is trusted: a zip's central directory
(names, links, declared sizes) is checked before any entry is decompressed, a .npy header before
its data, an image header before its pixels. Every refusal is an InvalidDataset carrying the HTTP
status the API answers with and a message naming the problem.

The canonical form is one safetensors file: train_x (N, C, H, W) uint8 or float32, train_y (N,)
int64, the same for test_x/test_y when there is a test split, and metadata naming the classes.
This module is pure (numpy, Pillow, safetensors, stdlib): no HTTP, no database, no torch.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
import stat
import struct
import warnings
import zipfile
import zlib
from array import array
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt
import safetensors.numpy
from numpy.lib import format as npy_format
from PIL import Image

SourceFormat = Literal["npz", "csv", "zip"]
Samples = npt.NDArray[np.uint8 | np.float32]  # (N, C, H, W)
Labels = npt.NDArray[np.int64]  # (N,)
SampleShape = tuple[int, int, int]  # (C, H, W)

CANONICAL_VERSION = "1"
MiB = 1024 * 1024

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
NPY_MAGIC = b"\x93NUMPY"
# Enough of the file to tell text from binary without reading all of it.
SNIFF_BYTES = 64 * 1024
# Bytes that occur in text (the heuristic `file` uses); a sample with others is binary data.
TEXT_BYTES = bytes({7, 8, 9, 10, 12, 13, 27} | set(range(0x20, 0x100)))
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
PATH_SEPARATORS = re.compile(r"[/\\]")

# Small entries (a PNG, a .npy of a mostly-zero mask) can compress far better than 200x and are
# harmless; the ratio cap is for entries big enough to hurt.
RATIO_CHECK_MIN_BYTES = 1 * MiB
READ_CHUNK_BYTES = 1 * MiB
# Deflate decompresses at most one chunk's worth of output per read. zipfile's bzip2 and LZMA
# readers have no such bound: one small chunk could expand to gigabytes before zipfile truncates
# it to the declared size. Those methods are refused.
SAFE_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
ENCRYPTED_FLAG = 0x1
# What reading a zip entry raises when its bytes are corrupt or truncated.
CORRUPT_ENTRY_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)
# What Pillow raises for bytes that are no image; UnidentifiedImageError is an OSError. Not the
# zip's own errors: a bad CRC under Image.open is the entry's fault, reported by _entry_errors.
CORRUPT_IMAGE_ERRORS = (EOFError, OSError, ValueError, SyntaxError)
DECOMPRESSION_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

NPZ_ARRAYS = ("x", "y", "x_test", "y_test")
CHANNEL_COUNTS = (1, 3, 4)
FLOAT32_MAX = float(np.finfo(np.float32).max)
DEFAULT_LABEL_COLUMN = "label"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS = ("PNG", "JPEG")
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SPLIT_FOLDERS = ("train", "test")
ZIP_LAYOUTS = "<class>/<image>, <root>/<class>/<image>, or train/<class>/<image> + test/..."


@dataclass(frozen=True)
class IngestLimits:
    max_samples: int = 1_000_000  # train + test samples
    min_train_samples: int = 10
    max_classes: int = 1000
    max_values_per_sample: int = 3 * 256 * 256  # C*H*W (or D for feature vectors)
    max_zip_entries: int = 100_000
    max_uncompressed_bytes: int = 4 * 1024**3  # sum of a zip's (or npz's) declared entry sizes
    max_compression_ratio: float = 200.0  # per entry and in total: uncompressed / compressed
    max_image_pixels: int = 4096 * 4096  # per decoded image (decompression bombs)


@dataclass(frozen=True)
class IngestOptions:
    label_column: str | None = None  # CSV: the label column; default "label"
    image_size: tuple[int, int] | None = None  # zip: (height, width); default the most common


@dataclass
class CanonicalDataset:
    train_x: Samples  # (N, C, H, W) uint8 or float32; feature vectors are (N, D, 1, 1)
    train_y: Labels  # (N,) int64 in [0, num_classes)
    test_x: Samples | None
    test_y: Labels | None
    class_names: list[str]  # label i is class_names[i]
    source_format: SourceFormat

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> SampleShape:
        channels, height, width = self.train_x.shape[1:]
        return (channels, height, width)

    @property
    def train_size(self) -> int:
        return len(self.train_x)

    @property
    def test_size(self) -> int:
        return 0 if self.test_x is None else len(self.test_x)


class InvalidDataset(Exception):
    """The upload is refused; `status_code` (413, 415 or 422) and `message` say why, naming the
    problem."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def ingest(
    path: Path, filename: str, options: IngestOptions, limits: IngestLimits
) -> CanonicalDataset:
    """Read the upload at `path` (called `filename` by its sender) into canonical form, or raise
    InvalidDataset. Nothing is written anywhere: the caller decides where the result goes."""
    if _detect_format(path, filename) == "csv":
        _refuse_option("image_size", options.image_size, "zip uploads of images")
        return _read_csv(path, options.label_column or DEFAULT_LABEL_COLUMN, limits)
    with _open_zip(path, filename) as archive:
        entries = _checked_entries(archive, limits)
        if _is_npz(entries, filename):
            _refuse_option("label_column", options.label_column, "CSV uploads")
            _refuse_option("image_size", options.image_size, "zip uploads of images")
            return _read_npz(archive, entries, limits)
        _refuse_option("label_column", options.label_column, "CSV uploads")
        return _read_image_zip(archive, entries, options.image_size, limits)


def write_canonical(dataset: CanonicalDataset, path: Path) -> None:
    """Write the safetensors file the worker reads, atomically; the same dataset always gives the
    same bytes."""
    metadata = {
        "taas_dataset": CANONICAL_VERSION,
        "class_names": json.dumps(dataset.class_names),
        "source_format": dataset.source_format,
    }
    partial = path.with_name(f".{path.name}.partial")
    try:
        safetensors.numpy.save_file(_canonical_tensors(dataset), partial, metadata=metadata)
        _sort_header_metadata(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _canonical_tensors(dataset: CanonicalDataset) -> dict[str, npt.NDArray[Any]]:
    splits = {
        "train": (dataset.train_x, dataset.train_y),
        "test": (dataset.test_x, dataset.test_y),
    }
    tensors: dict[str, npt.NDArray[Any]] = {}
    for split, (x, y) in splits.items():
        if x is not None and y is not None:
            # safetensors copies raw memory from each data pointer: arrays must be contiguous.
            tensors[f"{split}_x"] = np.ascontiguousarray(x)  # (N, C, H, W) uint8 or float32
            tensors[f"{split}_y"] = np.ascontiguousarray(y, dtype=np.int64)  # (N,)
    return tensors


def _sort_header_metadata(path: Path) -> None:
    """safetensors serializes __metadata__ from a Rust HashMap, so its key order changes from one
    call to the next; rewrite the header with the keys sorted. Only the order changes (the header
    is ASCII JSON: class names went through json.dumps), so the header keeps its length and the
    tensor data stays where it is."""
    with path.open("r+b") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        rewritten = json.dumps(header, separators=(",", ":")).encode().ljust(length)
        if len(rewritten) != length:
            raise RuntimeError(f"safetensors header changed length: {length} -> {len(rewritten)}")
        file.seek(8)
        file.write(rewritten)


def _preview(names: list[str], count: int) -> str:
    shown = ", ".join(repr(name) for name in names[:count])
    return shown + (", ..." if len(names) > count else "")


def _refuse_option(name: str, value: object, applies_to: str) -> None:
    if value is not None:
        raise InvalidDataset(422, f"option {name}={value!r} applies only to {applies_to}")


# Format detection ---------------------------------------------------------------------------


def _detect_format(path: Path, filename: str) -> Literal["zip", "csv"]:
    """By content (the name only helps messages). 415 when the bytes are no format we read."""
    with path.open("rb") as file:
        sample = file.read(SNIFF_BYTES)
        complete = not file.read(1)
    if not sample:
        raise InvalidDataset(422, f"{filename!r} is empty")
    if sample.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        return "zip"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InvalidDataset(422, f"{filename!r} is UTF-16 text; save the CSV as UTF-8")
    if not _looks_like_text(sample):
        raise InvalidDataset(415, _unknown_format_message(sample, filename))
    _require_utf8(sample, complete, filename)
    return "csv"


def _looks_like_text(sample: bytes) -> bool:
    # A few stray control bytes can be text in some odd encoding; binary data has many, and NULs.
    control_bytes = len(sample.translate(None, TEXT_BYTES))
    return b"\0" not in sample and control_bytes <= len(sample) // 100


def _require_utf8(sample: bytes, complete: bool, filename: str) -> None:
    # Incremental, so a character cut in two at the end of an incomplete sample is not an error.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
    except UnicodeDecodeError as error:
        raise InvalidDataset(
            422,
            f"{filename!r} is not UTF-8 text: byte {sample[error.start]:#04x} at offset "
            f"{error.start} ({error.reason}); save the CSV as UTF-8",
        ) from error


def _unknown_format_message(sample: bytes, filename: str) -> str:
    hint = ""
    if sample.startswith(NPY_MAGIC):
        hint = " (this is a single .npy array: save x and y together with np.savez)"
    return (
        f"unknown format for {filename!r} (starts with {sample[:8]!r}): expected an .npz of "
        "arrays x and y, a UTF-8 CSV with a header row, or a .zip of PNG/JPEG images in one "
        f"folder per class{hint}"
    )


# Zip archives (npz and image zips alike) ----------------------------------------------------


@contextmanager
def _open_zip(path: Path, filename: str) -> Iterator[zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise InvalidDataset(422, f"{filename!r} is a corrupt or truncated zip: {error}") from error
    with archive:
        yield archive


def _checked_entries(archive: zipfile.ZipFile, limits: IngestLimits) -> list[zipfile.ZipInfo]:
    """The archive's files, once nothing in its central directory could escape a folder, hide
    behind a link or expand past the caps. Decided before any entry is decompressed."""
    entries = archive.infolist()
    if len(entries) > limits.max_zip_entries:
        raise InvalidDataset(
            413, f"the zip has {len(entries)} entries; at most {limits.max_zip_entries} are allowed"
        )
    seen: set[str] = set()
    for entry in entries:
        _check_entry(entry)
        if entry.filename in seen:
            # Which copy a reader picks is up to the reader: refuse the ambiguity.
            raise InvalidDataset(422, f"the zip has two entries named {entry.filename!r}")
        seen.add(entry.filename)
    _check_declared_sizes(entries, limits)
    files = [entry for entry in entries if not entry.is_dir()]
    if not files:
        raise InvalidDataset(422, "the zip holds no files")
    return files


def _check_entry(entry: zipfile.ZipInfo) -> None:
    """Zip-slip and friends: refused even though nothing is ever extracted, because a name like
    that is never an honest dataset and a later tool might extract it."""
    name = entry.filename
    if _escapes_archive(name):
        raise InvalidDataset(
            422, f"zip entry {name!r} points outside the archive (absolute path or '..')"
        )
    if stat.S_ISLNK(entry.external_attr >> 16):
        raise InvalidDataset(422, f"zip entry {name!r} is a symbolic link; links are not accepted")
    if entry.flag_bits & ENCRYPTED_FLAG:
        raise InvalidDataset(422, f"zip entry {name!r} is encrypted")
    if entry.compress_type not in SAFE_COMPRESSION:
        raise InvalidDataset(
            422,
            f"zip entry {name!r} uses compression method {entry.compress_type}; "
            "only stored and deflate entries are accepted",
        )


def _escapes_archive(name: str) -> bool:
    absolute = name.startswith(("/", "\\")) or WINDOWS_DRIVE.match(name) is not None
    return absolute or ".." in PATH_SEPARATORS.split(name)


def _check_declared_sizes(entries: list[zipfile.ZipInfo], limits: IngestLimits) -> None:
    """Zip bombs, from the sizes the central directory declares. Reads stop at those sizes (see
    _read_entry), so an entry cannot expand past what passed here."""
    uncompressed = sum(entry.file_size for entry in entries)
    if uncompressed > limits.max_uncompressed_bytes:
        raise InvalidDataset(
            413,
            f"the zip expands to {uncompressed} bytes; "
            f"at most {limits.max_uncompressed_bytes} are allowed",
        )
    for entry in entries:
        if entry.file_size > RATIO_CHECK_MIN_BYTES:
            _check_ratio(
                f"zip entry {entry.filename!r}", entry.file_size, entry.compress_size, limits
            )
    if uncompressed > RATIO_CHECK_MIN_BYTES:
        compressed = sum(entry.compress_size for entry in entries)
        _check_ratio("the zip", uncompressed, compressed, limits)


def _check_ratio(what: str, uncompressed: int, compressed: int, limits: IngestLimits) -> None:
    ratio = uncompressed / max(compressed, 1)
    if ratio > limits.max_compression_ratio:
        raise InvalidDataset(
            422,
            f"{what} expands {ratio:.0f}x ({compressed} -> {uncompressed} bytes); the compression "
            f"ratio may be at most {limits.max_compression_ratio:g}x (zip bomb)",
        )


@contextmanager
def _entry_errors(entry: zipfile.ZipInfo) -> Iterator[None]:
    """Corrupt bytes inside an entry (bad CRC, broken deflate stream, truncation) become a 422."""
    try:
        yield
    except CORRUPT_ENTRY_ERRORS as error:
        raise InvalidDataset(
            422, f"zip entry {entry.filename!r} is corrupt or truncated: {error}"
        ) from error


def _read_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> bytes:
    """All of an entry, read in chunks and refused as soon as it yields more than it declared, so
    memory stays within what _check_declared_sizes allowed whatever the stream holds."""
    chunks: list[bytes] = []
    size = 0
    with _entry_errors(entry), archive.open(entry) as stream:
        while chunk := stream.read(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > entry.file_size:
                raise InvalidDataset(
                    422,
                    f"zip entry {entry.filename!r} holds more than the {entry.file_size} bytes "
                    "it declares",
                )
            chunks.append(chunk)
    return b"".join(chunks)


def _is_npz(entries: list[zipfile.ZipInfo], filename: str) -> bool:
    # The name breaks the tie for a .npz that also holds something else.
    every_entry_npy = all(entry.filename.endswith(".npy") for entry in entries)
    return every_entry_npy or filename.lower().endswith(".npz")


# npz ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


def _read_npz(
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
    _check_two_classes({str(label) for label in np.unique(train_y).tolist()})
    train_x = _npz_samples("x", _load_npy(archive, members["x"]), sample_shape)
    test_x = None
    if test_y is not None:
        test_x = _npz_samples("x_test", _load_npy(archive, members["x_test"]), sample_shape)
    train_x, test_x = _same_dtype(train_x, test_x)
    return CanonicalDataset(
        train_x, train_y, test_x, test_y, _numbered_classes(train_y, test_y), "npz"
    )


def _check_npz_members(members: dict[str, zipfile.ZipInfo]) -> None:
    for key in ("x", "y"):
        if key not in members:
            found = _preview(sorted(members), 10)
            raise InvalidDataset(422, f"the npz has no {key!r} array (it holds {found})")
    if ("x_test" in members) != ("y_test" in members):
        present, missing = ("x_test", "y_test") if "x_test" in members else ("y_test", "x_test")
        raise InvalidDataset(422, f"the npz has {present} but no {missing}; give both or neither")


def _read_npy_header(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> _NpyHeader:
    """Shape and dtype from the .npy header alone, and proof that the entry holds exactly that
    much data: numpy allocates the declared shape before reading, so a lying header must not
    reach it."""
    with _entry_errors(entry), archive.open(entry) as stream:
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
    _check_sample_counts(train_size, test_size, limits)
    _check_sample_values(sample_shape, limits)
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
    with _entry_errors(entry), archive.open(entry) as stream:
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


def _numbered_classes(train_y: Labels, test_y: Labels | None) -> list[str]:
    highest = int(train_y.max()) if test_y is None else max(int(train_y.max()), int(test_y.max()))
    return [str(label) for label in range(highest + 1)]


# Checks every format shares -----------------------------------------------------------------


def _check_sample_counts(train_size: int, test_size: int, limits: IngestLimits) -> None:
    total = train_size + test_size
    if total > limits.max_samples:
        raise InvalidDataset(
            422,
            f"the dataset has {total} samples ({train_size} train + {test_size} test); "
            f"at most {limits.max_samples} are allowed",
        )
    if train_size < limits.min_train_samples:
        raise InvalidDataset(
            422,
            f"the training split has {train_size} samples; "
            f"at least {limits.min_train_samples} are needed",
        )


def _check_sample_values(sample_shape: SampleShape, limits: IngestLimits) -> None:
    values = math.prod(sample_shape)
    if values > limits.max_values_per_sample:
        raise InvalidDataset(
            422,
            f"each sample has {values} values (C, H, W = {sample_shape}); "
            f"at most {limits.max_values_per_sample} are allowed",
        )


def _check_two_classes(present: set[str]) -> None:
    if len(present) < 2:
        listed = ", ".join(sorted(present))
        raise InvalidDataset(
            422,
            f"the training split has {len(present)} class ({listed}); at least 2 are needed",
        )


# CSV ----------------------------------------------------------------------------------------


def _read_csv(path: Path, label_column: str, limits: IngestLimits) -> CanonicalDataset:
    """A header row, a label column, every other column a numeric feature: (N, D, 1, 1) float32."""
    with path.open("rb") as binary:
        rows = _csv_rows(binary)
        header = _csv_header(next(rows, None), label_column, limits)
        label_index = header.index(label_column)
        feature_names = header[:label_index] + header[label_index + 1 :]
        features, labels = _csv_samples(rows, label_index, feature_names, limits)
    if not labels:
        raise InvalidDataset(422, "the CSV has a header row but no data rows")
    _check_sample_counts(len(labels), 0, limits)
    train_x = np.frombuffer(features, dtype=np.float32).reshape(len(labels), -1, 1, 1)
    train_y = np.frombuffer(labels, dtype=np.int64)
    _check_two_classes({str(label) for label in set(labels)})
    return CanonicalDataset(train_x, train_y, None, None, _numbered_classes(train_y, None), "csv")


def _csv_rows(binary: IO[bytes]) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows, each with the line it ends on (what an editor shows)."""
    reader = csv.reader(_utf8_lines(binary))
    try:
        for cells in reader:
            if cells:
                yield reader.line_num, cells
    except csv.Error as error:
        raise InvalidDataset(
            422, f"the CSV is malformed near line {reader.line_num + 1}: {error}"
        ) from error


def _utf8_lines(binary: IO[bytes]) -> Iterator[str]:
    """Decoded one line at a time, so a bad byte is reported with its line; drops a BOM."""
    for number, line in enumerate(binary, start=1):
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise InvalidDataset(
                422,
                f"the CSV is not UTF-8 text: line {number} has byte {line[error.start]:#04x} "
                f"({error.reason}); save it as UTF-8",
            ) from error
        yield text


def _csv_header(
    row: tuple[int, list[str]] | None, label_column: str, limits: IngestLimits
) -> list[str]:
    if row is None:
        raise InvalidDataset(422, "the CSV is empty; expected a header row naming the columns")
    header = [name.strip() for name in row[1]]
    if header.count(label_column) != 1:
        if label_column in header:
            raise InvalidDataset(
                422, f"the CSV header names {label_column!r} more than once; which is the label?"
            )
        raise InvalidDataset(
            422,
            f"the CSV has no label column {label_column!r}; its header is {_preview(header, 20)}",
        )
    if len(header) == 1:
        raise InvalidDataset(
            422, f"the CSV has only the label column {label_column!r}; no features"
        )
    _check_sample_values((len(header) - 1, 1, 1), limits)
    return header


def _csv_samples(
    rows: Iterator[tuple[int, list[str]]],
    label_index: int,
    feature_names: list[str],
    limits: IngestLimits,
) -> tuple[array[float], array[int]]:
    """Features row-major (N * D float32) and labels (N int64), in compact arrays: 4 bytes a value
    however the CSV spelled it. Stops at max_samples rather than reading on."""
    features: array[float] = array("f")
    labels: array[int] = array("q")
    columns = len(feature_names) + 1
    for line, cells in rows:
        if len(cells) != columns:
            raise InvalidDataset(
                422, f"line {line} has {len(cells)} cells; the header has {columns} columns"
            )
        if len(labels) == limits.max_samples:
            raise InvalidDataset(
                422, f"the CSV has more than {limits.max_samples} samples; that is the limit"
            )
        labels.append(_csv_label(cells.pop(label_index), line, limits))
        features.extend(
            _csv_feature(cell, name, line) for cell, name in zip(cells, feature_names, strict=True)
        )
    return features, labels


def _csv_label(cell: str, line: int, limits: IngestLimits) -> int:
    try:
        label = int(cell)
    except ValueError:
        raise InvalidDataset(
            422, f"line {line}: label {cell!r} is not an integer; labels are class numbers"
        ) from None
    if label < 0:
        raise InvalidDataset(422, f"line {line}: label {label} is negative; labels must be >= 0")
    if label >= limits.max_classes:
        raise InvalidDataset(
            422,
            f"line {line}: label {label} is too large; at most {limits.max_classes} classes are "
            f"allowed (labels 0 to {limits.max_classes - 1})",
        )
    return label


def _csv_feature(cell: str, column: str, line: int) -> float:
    if not cell.strip():
        raise InvalidDataset(422, f"line {line}, column {column!r} is empty; features need values")
    try:
        value = float(cell)
    except ValueError:
        raise InvalidDataset(
            422, f"line {line}, column {column!r}: {cell!r} is not a number"
        ) from None
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise InvalidDataset(
            422, f"line {line}, column {column!r}: {cell!r} is not a finite float32 number"
        )
    return value


# Zip of images in class folders -------------------------------------------------------------


@dataclass(frozen=True)
class _ImageEntry:
    entry: zipfile.ZipInfo
    split: str  # "train" or "test"
    class_name: str


@dataclass(frozen=True)
class _ImageHeader:
    height: int
    width: int
    mode: str


def _read_image_zip(
    archive: zipfile.ZipFile,
    entries: list[zipfile.ZipInfo],
    image_size: tuple[int, int] | None,
    limits: IngestLimits,
) -> CanonicalDataset:
    """Class folders of PNG/JPEG -> (N, C, H, W) uint8; labels index the sorted folder names."""
    images = _image_entries(entries)
    class_names = sorted({image.class_name for image in images})
    train = [image for image in images if image.split == "train"]
    test = [image for image in images if image.split == "test"]
    _check_image_counts(train, test, class_names, limits)
    # First pass reads headers only: sizes and modes decide the canonical shape before any
    # pixel is decoded.
    headers = [_image_header(archive, image.entry, limits) for image in images]
    mode = "L" if all(header.mode in GRAYSCALE_MODES for header in headers) else "RGB"
    size = _target_size(image_size, headers)
    sample_shape = (1 if mode == "L" else 3, *size)
    _check_sample_values(sample_shape, limits)
    _check_decoded_bytes(len(images) * math.prod(sample_shape), limits)
    label_of = {name: label for label, name in enumerate(class_names)}
    train_x, train_y = _decode_split(archive, train, label_of, mode, size, limits)
    test_x, test_y = (
        _decode_split(archive, test, label_of, mode, size, limits) if test else (None, None)
    )
    return CanonicalDataset(train_x, train_y, test_x, test_y, class_names, "zip")


def _check_decoded_bytes(decoded: int, limits: IngestLimits) -> None:
    # Small, flat PNGs can decode to far more than the zip holds: the decoded uint8 pixels are
    # what the API and every worker keep in memory, so they share the zip's uncompressed cap.
    if decoded > limits.max_uncompressed_bytes:
        raise InvalidDataset(
            413,
            f"the images decode to {decoded} bytes; "
            f"at most {limits.max_uncompressed_bytes} are allowed",
        )


def _image_entries(entries: list[zipfile.ZipInfo]) -> list[_ImageEntry]:
    """Each image with its split and class, sorted so that order and labels never depend on how
    the zip was written. Layouts: <class>/<image>, <root>/<class>/<image>, and
    train/<class>/<image> beside test/<class>/<image> (optionally under one root)."""
    files = [(entry, parts) for entry in entries if not _is_junk(parts := _path_parts(entry))]
    if not files:
        raise InvalidDataset(422, f"the zip holds no images; expected {ZIP_LAYOUTS}")
    files = _without_common_root(files)
    split_layout = all(len(parts) == 3 and parts[0].lower() in SPLIT_FOLDERS for _, parts in files)
    images = [_image_entry(entry, parts, split_layout) for entry, parts in files]
    return sorted(images, key=lambda image: (image.split, image.class_name, image.entry.filename))


def _path_parts(entry: zipfile.ZipInfo) -> list[str]:
    return [part for part in PATH_SEPARATORS.split(entry.filename) if part not in ("", ".")]


def _is_junk(parts: list[str]) -> bool:
    # Finder's resource forks and dotfiles (.DS_Store, .git/...) ride along in zips made by hand;
    # a name of only "." and "/" names nothing.
    return not parts or parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts)


def _without_common_root(
    files: list[tuple[zipfile.ZipInfo, list[str]]],
) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Drop one folder that holds everything (zipping a folder makes one), unless it is a split."""
    roots = {parts[0].lower() for _, parts in files}
    one_plain_root = len(roots) == 1 and roots.isdisjoint(SPLIT_FOLDERS)
    if one_plain_root and all(len(parts) >= 3 for _, parts in files):
        return [(entry, parts[1:]) for entry, parts in files]
    return files


def _image_entry(entry: zipfile.ZipInfo, parts: list[str], split_layout: bool) -> _ImageEntry:
    name = entry.filename
    if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        raise InvalidDataset(
            422,
            f"zip entry {name!r} is not a PNG or JPEG image; a zip upload holds only images in "
            "class folders",
        )
    if split_layout:
        return _ImageEntry(entry, parts[0].lower(), parts[1])
    if len(parts) == 2:
        return _ImageEntry(entry, "train", parts[0])
    raise InvalidDataset(
        422, f"zip entry {name!r} is not in a class folder; expected {ZIP_LAYOUTS}"
    )


def _check_image_counts(
    train: list[_ImageEntry], test: list[_ImageEntry], class_names: list[str], limits: IngestLimits
) -> None:
    # From the file list alone: a refusal here costs no decoding.
    _check_sample_counts(len(train), len(test), limits)
    if len(class_names) > limits.max_classes:
        raise InvalidDataset(
            422,
            f"the zip has {len(class_names)} class folders; "
            f"at most {limits.max_classes} are allowed",
        )
    _check_two_classes({image.class_name for image in train})


def _image_header(
    archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limits: IngestLimits
) -> _ImageHeader:
    # Straight from the zip stream: Image.open reads only as far as the header.
    with (
        _entry_errors(entry),
        archive.open(entry) as stream,
        _opened_image(stream, entry.filename, limits) as image,
    ):
        return _ImageHeader(image.height, image.width, image.mode)


def _target_size(
    image_size: tuple[int, int] | None, headers: list[_ImageHeader]
) -> tuple[int, int]:
    """(height, width): the option, else the most common size (ties: the first in sorted order)."""
    if image_size is None:
        return Counter((header.height, header.width) for header in headers).most_common(1)[0][0]
    height, width = image_size
    if height < 1 or width < 1:
        raise InvalidDataset(
            422, f"option image_size={image_size!r}: height and width must be positive"
        )
    return (height, width)


@contextmanager
def _opened_image(stream: IO[bytes], name: str, limits: IngestLimits) -> Iterator[Image.Image]:
    """An opened (header-only) PNG or JPEG whose declared size is within the pixel cap.

    Errors raised inside the `with` body (decoding, in _decode_image) are turned into a 422 here
    too, and Pillow's DecompressionBombWarning is an error there, without touching the global
    Image.MAX_IMAGE_PIXELS."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(stream, formats=IMAGE_FORMATS) as image:
                _check_image_pixels(image, name, limits)
                yield image
        except DECOMPRESSION_BOMB_ERRORS as error:
            raise InvalidDataset(
                422, f"zip entry {name!r} is a decompression bomb: {error}"
            ) from error
        except CORRUPT_IMAGE_ERRORS as error:
            raise InvalidDataset(
                422, f"zip entry {name!r} is not a decodable PNG or JPEG image: {error}"
            ) from error


def _check_image_pixels(image: Image.Image, name: str, limits: IngestLimits) -> None:
    width, height = image.size  # declared by the header; nothing decoded yet
    if width * height > limits.max_image_pixels:
        raise InvalidDataset(
            422,
            f"zip entry {name!r} declares {width}x{height} pixels; at most "
            f"{limits.max_image_pixels} pixels per image are allowed (decompression bomb)",
        )


def _decode_split(
    archive: zipfile.ZipFile,
    images: list[_ImageEntry],
    label_of: dict[str, int],
    mode: str,
    size: tuple[int, int],
    limits: IngestLimits,
) -> tuple[npt.NDArray[np.uint8], Labels]:
    height, width = size
    channels = 1 if mode == "L" else 3
    x = np.empty((len(images), channels, height, width), dtype=np.uint8)  # (N, C, H, W)
    for index, image in enumerate(images):
        x[index] = _decode_image(archive, image.entry, mode, size, limits)
    y = np.array([label_of[image.class_name] for image in images], dtype=np.int64)  # (N,)
    return x, y


def _decode_image(
    archive: zipfile.ZipFile,
    entry: zipfile.ZipInfo,
    mode: str,
    size: tuple[int, int],
    limits: IngestLimits,
) -> npt.NDArray[np.uint8]:
    """One image, fully decoded (a sound header can sit on corrupt pixels), as (C, H, W) uint8."""
    height, width = size
    data = io.BytesIO(_read_entry(archive, entry))
    with _opened_image(data, entry.filename, limits) as image:
        image.load()
        converted = image.convert(mode)
        if converted.size != (width, height):
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(converted, dtype=np.uint8)  # (H, W) for L, (H, W, 3) for RGB
    return pixels.reshape(height, width, -1).transpose(2, 0, 1)
