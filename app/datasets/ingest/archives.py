"""Zip archives, npz and image zips alike: opened, their central directory (names, links,
encryption, compression methods, declared sizes) checked before any entry is decompressed, and
entries read no further than the sizes that passed."""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taas.app.datasets.ingest.common import IngestLimits, InvalidDataset

MiB = 1024 * 1024

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


@contextmanager
def open_zip(path: Path, filename: str) -> Iterator[zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise InvalidDataset(422, f"{filename!r} is a corrupt or truncated zip: {error}") from error
    with archive:
        yield archive


def checked_entries(archive: zipfile.ZipFile, limits: IngestLimits) -> list[zipfile.ZipInfo]:
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
    read_entry), so an entry cannot expand past what passed here."""
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
def entry_errors(entry: zipfile.ZipInfo) -> Iterator[None]:
    """Corrupt bytes inside an entry (bad CRC, broken deflate stream, truncation) become a 422."""
    try:
        yield
    except CORRUPT_ENTRY_ERRORS as error:
        raise InvalidDataset(
            422, f"zip entry {entry.filename!r} is corrupt or truncated: {error}"
        ) from error


def read_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> bytes:
    """All of an entry, read in chunks and refused as soon as it yields more than it declared, so
    memory stays within what _check_declared_sizes allowed whatever the stream holds."""
    chunks: list[bytes] = []
    size = 0
    with entry_errors(entry), archive.open(entry) as stream:
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
