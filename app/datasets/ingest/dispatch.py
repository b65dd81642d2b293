"""ingest(): which format an upload is, told by its content (its name only helps messages), and
the reader that takes it. Options that belong to another format are refused, not ignored."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Literal

from taas.app.datasets.ingest.archives import checked_entries, open_zip
from taas.app.datasets.ingest.common import (
    CanonicalDataset,
    IngestLimits,
    IngestOptions,
    InvalidDataset,
)
from taas.app.datasets.ingest.images import read_image_zip
from taas.app.datasets.ingest.npz import is_npz, read_npz
from taas.app.datasets.ingest.tables import DEFAULT_LABEL_COLUMN, read_csv

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
NPY_MAGIC = b"\x93NUMPY"
# Enough of the file to tell text from binary without reading all of it.
SNIFF_BYTES = 64 * 1024
# Bytes that occur in text (the heuristic `file` uses); a sample with others is binary data.
TEXT_BYTES = bytes({7, 8, 9, 10, 12, 13, 27} | set(range(0x20, 0x100)))


def ingest(
    path: Path, filename: str, options: IngestOptions, limits: IngestLimits
) -> CanonicalDataset:
    """Read the upload at `path` (called `filename` by its sender) into canonical form, or raise
    InvalidDataset. Nothing is written anywhere: the caller decides where the result goes."""
    if _detect_format(path, filename) == "csv":
        _refuse_option("image_size", options.image_size, "zip uploads of images")
        return read_csv(path, options.label_column or DEFAULT_LABEL_COLUMN, limits)
    with open_zip(path, filename) as archive:
        entries = checked_entries(archive, limits)
        if is_npz(entries, filename):
            _refuse_option("label_column", options.label_column, "CSV uploads")
            _refuse_option("image_size", options.image_size, "zip uploads of images")
            return read_npz(archive, entries, limits)
        _refuse_option("label_column", options.label_column, "CSV uploads")
        return read_image_zip(archive, entries, options.image_size, limits)


def _refuse_option(name: str, value: object, applies_to: str) -> None:
    if value is not None:
        raise InvalidDataset(422, f"option {name}={value!r} applies only to {applies_to}")


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
    if Path(filename).suffix.lower() in (".npz", ".zip"):
        # Text under an archive's name: read as a CSV, it would be refused for its columns.
        raise InvalidDataset(
            415,
            f"{filename!r} is text, not the zip archive its name says (an .npz is one: "
            "numpy.savez writes it)",
        )
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
