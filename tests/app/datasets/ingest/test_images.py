"""A zip of class folders becomes the canonical dataset; a bad image is refused by name."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from taas.app.datasets.ingest import IngestOptions
from tests.app.datasets.ingest.uploads import (
    GRAY,
    LIMITS,
    RED,
    Entries,
    assert_round_trips,
    class_images,
    image_bytes,
    ingested,
    refused,
    write_zip,
)


def test_zip_of_class_folders_resizes_to_the_most_common_size(tmp_path: Path) -> None:
    odd_sizes: Entries = [("pets/dog/small.png", image_bytes(5, 5, "L", GRAY))]
    junk: Entries = [("__MACOSX/pets/cat/._0.png", b"\0\5\26\7"), ("pets/.DS_Store", b"\0\0\0\1")]
    jpeg: Entries = [("pets/dog/photo.JPG", image_bytes(8, 6, "L", GRAY, "JPEG"))]
    path = write_zip(tmp_path / "d.zip", class_images("pets/") + odd_sizes + junk + jpeg)
    dataset = ingested(path)

    assert dataset.train_x.dtype == np.uint8
    assert dataset.train_x.shape == (14, 3, 6, 8)  # RGB: not every image is grayscale
    assert dataset.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(dataset.train_y, [0] * 6 + [1] * 8)
    np.testing.assert_array_equal(dataset.train_x[0, :, 3, 3], RED)
    np.testing.assert_array_equal(dataset.train_x[-1, :, 3, 3], [GRAY] * 3)  # the resized one
    assert dataset.source_format == "zip"
    assert_round_trips(dataset, tmp_path)


def test_zip_of_class_folders_resizes_to_an_explicit_size(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "d.zip", class_images())
    dataset = ingested(path, IngestOptions(image_size=(4, 9)))

    assert dataset.shape == (3, 4, 9)
    np.testing.assert_array_equal(dataset.train_x[0, :, 2, 7], RED)


def test_zip_with_train_and_test_folders(tmp_path: Path) -> None:
    gray = image_bytes(7, 5, "L", GRAY)
    entries: Entries = [
        *[(f"data/train/{name}/{i}.png", gray) for name in ("b", "a") for i in range(6)],
        ("data/test/a/0.png", gray),
        ("data/test/c/0.png", gray),
    ]
    dataset = ingested(write_zip(tmp_path / "d.zip", entries))

    assert dataset.class_names == ["a", "b", "c"]
    assert dataset.train_x.shape == (12, 1, 5, 7)  # grayscale throughout: one channel
    assert dataset.test_x is not None
    assert dataset.test_y is not None
    assert dataset.test_x.shape == (2, 1, 5, 7)
    np.testing.assert_array_equal(dataset.test_y, [0, 2])
    assert int(dataset.train_x.min()) == int(dataset.train_x.max()) == GRAY
    assert_round_trips(dataset, tmp_path)


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but that holds no pixels: what a decompression
    bomb looks like before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    idat, iend = chunk(b"IDAT", zlib.compress(b"")), chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + iend


@pytest.mark.parametrize(
    ("side", "phrase"),
    [
        (5000, "declares 5000x5000 pixels; at most 16777216 pixels per image"),  # our cap
        (20000, "is a decompression bomb: Image size (400000000 pixels) exceeds"),  # Pillow's
    ],
)
def test_image_decompression_bombs_are_refused(tmp_path: Path, side: int, phrase: str) -> None:
    path = write_zip(
        tmp_path / "d.zip", [*class_images(), ("cat/bomb.png", _png_declaring(side, side))]
    )
    error = refused(path)
    assert error.status_code == 422
    assert f"zip entry 'cat/bomb.png' {phrase}" in error.message
    assert Image.MAX_IMAGE_PIXELS == 89478485  # the global was left alone


@pytest.mark.parametrize(
    "data",
    [b"not an image at all", image_bytes(8, 6)[:-30]],  # the second has a sound header
    ids=["garbage", "truncated"],
)
def test_undecodable_images_are_refused(tmp_path: Path, data: bytes) -> None:
    path = write_zip(tmp_path / "d.zip", [*class_images(), ("dog/broken.png", data)])
    error = refused(path)
    assert error.status_code == 422
    assert "zip entry 'dog/broken.png' is not a decodable PNG or JPEG image" in error.message


def test_a_non_image_file_in_the_zip_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "d.zip", [*class_images(), ("cat/notes.txt", b"meow")])
    error = refused(path)
    assert error.status_code == 422
    assert "zip entry 'cat/notes.txt' is not a PNG or JPEG image" in error.message


def test_images_outside_class_folders_are_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "d.zip", [*class_images(), ("stray.png", image_bytes(8, 6))])
    error = refused(path)
    assert error.status_code == 422
    assert "zip entry 'stray.png' is not in a class folder" in error.message


def test_images_that_decode_to_more_than_the_cap_are_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "d.zip", class_images())  # 12 RGB images of 8x6
    limits = dataclasses.replace(LIMITS, max_uncompressed_bytes=12 * 3 * 8 * 6 - 1)

    error = refused(path, limits=limits)

    assert error.status_code == 413
    assert "decode to 1728 bytes" in error.message
