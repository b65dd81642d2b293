"""Zips, npz and image zips alike: a corrupt archive or entry, a name outside the archive, a link,
and too many entries or bytes are refused by name."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from taas.app.datasets.ingest import IngestLimits
from tests.app.datasets.ingest.uploads import (
    class_images,
    image_bytes,
    labels,
    refused,
    write_npz,
    write_zip,
)


def test_a_corrupt_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.zip"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    error = refused(path)
    assert error.status_code == 422
    assert "'d.zip' is a corrupt or truncated zip" in error.message


def test_a_truncated_npz_is_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", x=np.zeros((12, 40)), y=labels(12))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    error = refused(path)
    assert error.status_code == 422
    assert "'d.npz' is a corrupt or truncated zip" in error.message


def test_an_entry_with_corrupt_bytes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in class_images():
            archive.writestr(name, data)
    content = bytearray(path.read_bytes())
    content[100] ^= 0xFF  # inside cat/0.png's stored bytes: its CRC no longer matches
    path.write_bytes(bytes(content))
    error = refused(path)
    assert error.status_code == 422
    assert "zip entry 'cat/0.png' is corrupt or truncated" in error.message


@pytest.mark.parametrize("name", ["../evil.png", "cat/../../evil.png", "/etc/x.png", "C:/x.png"])
def test_entries_outside_the_archive_are_refused(tmp_path: Path, name: str) -> None:
    path = write_zip(tmp_path / "d.zip", [*class_images(), (name, image_bytes(8, 6))])
    error = refused(path)
    assert error.status_code == 422
    assert f"zip entry {name!r} points outside the archive" in error.message


def test_a_symlink_entry_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("cat/link.png")
    link.create_system = 3  # Unix: external_attr holds st_mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = write_zip(tmp_path / "d.zip", [*class_images(), (link, b"/etc/passwd")])
    error = refused(path)
    assert (error.status_code, error.message) == (
        422,
        "zip entry 'cat/link.png' is a symbolic link; links are not accepted",
    )


def test_a_zip_bomb_by_compression_ratio_is_refused(tmp_path: Path) -> None:
    x = np.zeros((12, 200_000), np.uint8)  # 2.4 MB of zeros deflate to a few kB
    error = refused(write_npz(tmp_path / "d.npz", compressed=True, x=x, y=labels(12)))
    assert error.status_code == 422
    assert "zip entry 'x.npy' expands" in error.message
    assert "zip bomb" in error.message


def test_too_many_zip_entries_are_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "d.zip", class_images())
    error = refused(path, limits=IngestLimits(max_zip_entries=11))
    assert (error.status_code, error.message) == (
        413,
        "the zip has 12 entries; at most 11 are allowed",
    )


def test_too_many_uncompressed_bytes_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=labels(12))
    error = refused(path, limits=IngestLimits(max_uncompressed_bytes=500))
    assert error.status_code == 413
    assert error.message.startswith("the zip expands to ")
    assert error.message.endswith(" bytes; at most 500 are allowed")
