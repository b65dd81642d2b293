"""A zip upload of PNG/JPEG images in one folder per class. The layout comes from the names
alone and every image's header is read before any pixel is decoded; then all images are decoded
to one size and mode as (N, C, H, W) uint8, labels indexing the sorted class names."""

from __future__ import annotations

import io
import math
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import numpy as np
import numpy.typing as npt
from PIL import Image

from taas.app.datasets.ingest.archives import PATH_SEPARATORS, entry_errors, read_entry
from taas.app.datasets.ingest.common import (
    CanonicalDataset,
    IngestLimits,
    InvalidDataset,
    Labels,
    check_sample_counts,
    check_sample_values,
    check_two_classes,
)

# What Pillow raises for bytes that are no image; UnidentifiedImageError is an OSError. Not the
# zip's own errors: a bad CRC under Image.open is the entry's fault, reported by entry_errors.
CORRUPT_IMAGE_ERRORS = (EOFError, OSError, ValueError, SyntaxError)
DECOMPRESSION_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS = ("PNG", "JPEG")
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SPLIT_FOLDERS = ("train", "test")
ZIP_LAYOUTS = "<class>/<image>, <root>/<class>/<image>, or train/<class>/<image> + test/..."


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


def read_image_zip(
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
    check_sample_values(sample_shape, limits)
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
    check_sample_counts(len(train), len(test), limits)
    if len(class_names) > limits.max_classes:
        raise InvalidDataset(
            422,
            f"the zip has {len(class_names)} class folders; "
            f"at most {limits.max_classes} are allowed",
        )
    check_two_classes({image.class_name for image in train})


def _image_header(
    archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limits: IngestLimits
) -> _ImageHeader:
    # Straight from the zip stream: Image.open reads only as far as the header.
    with (
        entry_errors(entry),
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
    data = io.BytesIO(read_entry(archive, entry))
    with _opened_image(data, entry.filename, limits) as image:
        image.load()
        converted = image.convert(mode)
        if converted.size != (width, height):
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(converted, dtype=np.uint8)  # (H, W) for L, (H, W, 3) for RGB
    return pixels.reshape(height, width, -1).transpose(2, 0, 1)
