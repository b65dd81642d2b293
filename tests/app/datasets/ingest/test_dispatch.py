"""Uploads are told apart by content: empty and unknown ones are refused, and so are options meant
for another format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taas.app.datasets.ingest import IngestOptions
from tests.app.datasets.ingest.uploads import image_bytes, labels, refused, write_npz


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (bytes(range(256)) * 4, "unknown format for 'upload.bin'"),
        (image_bytes(8, 6), "expected an .npz of arrays x and y, a UTF-8 CSV"),
        (b"\x93NUMPY\x01\x00" + bytes(100), "save x and y together with np.savez"),
    ],
    ids=["binary", "single-png", "single-npy"],
)
def test_unknown_binary_formats_are_unsupported(
    tmp_path: Path, content: bytes, phrase: str
) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    error = refused(path)
    assert error.status_code == 415
    assert phrase in error.message


def test_text_named_as_an_archive_is_not_read_as_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "notnpz.npz"
    path.write_bytes(b"hello not a zip")
    error = refused(path)
    assert (error.status_code, error.message) == (
        415,
        "'notnpz.npz' is text, not the zip archive its name says (an .npz is one: numpy.savez "
        "writes it)",
    )


def test_an_empty_upload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"")
    error = refused(path)
    assert (error.status_code, error.message) == (422, "'d.csv' is empty")


def test_options_for_other_formats_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=labels(12))
    error = refused(path, IngestOptions(label_column="target"))
    assert (error.status_code, error.message) == (
        422,
        "option label_column='target' applies only to CSV uploads",
    )
