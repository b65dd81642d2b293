"""ingest(): every upload format becomes the canonical dataset; every bad upload is refused by name.

All files are built here, tiny; limits are lowered instead of making big files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors
import safetensors.numpy
from PIL import Image

from taas.app.datasets.ingest import (
    CanonicalDataset,
    IngestLimits,
    IngestOptions,
    InvalidDataset,
    ingest,
    write_canonical,
)

LIMITS = IngestLimits()
DEFAULTS = IngestOptions()
RED = (255, 0, 0)
GRAY = 100
Entries = list[tuple[str | zipfile.ZipInfo, bytes]]


def _ingest(
    path: Path, options: IngestOptions = DEFAULTS, limits: IngestLimits = LIMITS
) -> CanonicalDataset:
    return ingest(path, path.name, options, limits)


def _refused(
    path: Path, options: IngestOptions = DEFAULTS, limits: IngestLimits = LIMITS
) -> InvalidDataset:
    with pytest.raises(InvalidDataset) as caught:
        _ingest(path, options, limits)
    return caught.value


def _labels(count: int, classes: int = 2) -> np.ndarray:
    return np.arange(count, dtype=np.int64) % classes


def _write_npz(path: Path, compressed: bool = False, **arrays: Any) -> Path:
    save = np.savez_compressed if compressed else np.savez
    save(path, **arrays)
    return path


def _write_zip(path: Path, entries: Entries) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def _image_bytes(
    width: int,
    height: int,
    mode: str = "RGB",
    color: int | tuple[int, ...] = RED,
    kind: str = "PNG",
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, kind)
    return buffer.getvalue()


def _class_images(root: str = "", per_class: int = 6) -> Entries:
    """cat/ (RGB red) and dog/ (grayscale) PNGs, 8 wide and 6 high: a valid upload to spoil."""
    cats = [(f"{root}cat/{i}.png", _image_bytes(8, 6)) for i in range(per_class)]
    dogs = [(f"{root}dog/{i}.png", _image_bytes(8, 6, "L", GRAY)) for i in range(per_class)]
    return [*cats, *dogs]


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but that holds no pixels: what a decompression
    bomb looks like before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    idat, iend = chunk(b"IDAT", zlib.compress(b"")), chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + iend


def _assert_round_trips(dataset: CanonicalDataset, tmp_path: Path) -> None:
    """write_canonical gives the documented file, byte-identical on every write."""
    paths = [tmp_path / f"canonical-{i}.safetensors" for i in range(5)]
    for path in paths:
        write_canonical(dataset, path)
    assert len({path.read_bytes() for path in paths}) == 1
    tensors = safetensors.numpy.load_file(paths[0])
    with safetensors.safe_open(paths[0], framework="np") as file:
        metadata = file.metadata()
    assert metadata == {
        "taas_dataset": "1",
        "class_names": json.dumps(dataset.class_names),
        "source_format": dataset.source_format,
    }
    expected = {"train_x": dataset.train_x, "train_y": dataset.train_y}
    if dataset.test_x is not None and dataset.test_y is not None:
        expected |= {"test_x": dataset.test_x, "test_y": dataset.test_y}
    assert tensors.keys() == expected.keys()
    for name, array in expected.items():
        assert tensors[name].dtype == array.dtype
        np.testing.assert_array_equal(tensors[name], array)


# Good uploads --------------------------------------------------------------------------------


def test_npz_grayscale_uint8_images_gain_a_channel_axis(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (12, 5, 7), dtype=np.uint8)  # (N, H, W)
    dataset = _ingest(_write_npz(tmp_path / "d.npz", x=x, y=_labels(12, 3), extra=np.zeros(3)))

    assert dataset.train_x.dtype == np.uint8
    np.testing.assert_array_equal(dataset.train_x, x[:, None])  # (N, 1, H, W)
    assert dataset.train_y.dtype == np.int64
    np.testing.assert_array_equal(dataset.train_y, _labels(12, 3))
    assert (dataset.class_names, dataset.num_classes, dataset.shape) == (
        ["0", "1", "2"],
        3,
        (1, 5, 7),
    )
    assert (dataset.train_size, dataset.test_size, dataset.test_x) == (12, 0, None)
    assert dataset.source_format == "npz"
    _assert_round_trips(dataset, tmp_path)


def test_npz_channels_last_floats_become_nchw_float32(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((12, 4, 6, 3))  # (N, H, W, C) float64
    dataset = _ingest(_write_npz(tmp_path / "d.npz", x=x, y=_labels(12)))

    assert dataset.train_x.dtype == np.float32
    assert dataset.shape == (3, 4, 6)
    np.testing.assert_array_equal(dataset.train_x, x.transpose(0, 3, 1, 2).astype(np.float32))
    _assert_round_trips(dataset, tmp_path)


def test_npz_channels_first_with_a_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (12, 3, 4, 5), dtype=np.uint8)  # (N, C, H, W)
    x_test = rng.integers(0, 256, (5, 3, 4, 5), dtype=np.uint8)
    y_test = np.array([0, 1, 3, 1, 0], dtype=np.int32)  # class 3 appears only in the test split
    path = _write_npz(
        tmp_path / "d.npz", compressed=True, x=x, y=_labels(12), x_test=x_test, y_test=y_test
    )
    dataset = _ingest(path)

    np.testing.assert_array_equal(dataset.train_x, x)
    assert dataset.test_x is not None
    assert dataset.test_y is not None
    np.testing.assert_array_equal(dataset.test_x, x_test)
    assert dataset.test_y.dtype == np.int64
    np.testing.assert_array_equal(dataset.test_y, y_test)
    assert (dataset.train_size, dataset.test_size, dataset.num_classes) == (12, 5, 4)
    _assert_round_trips(dataset, tmp_path)


def test_npz_feature_vectors_become_float32_without_wrapping(tmp_path: Path) -> None:
    x = np.arange(12 * 5, dtype=np.int64).reshape(12, 5) * 100  # (N, D), values up to 5900
    y = _labels(12).reshape(12, 1).astype(np.uint8)  # (N, 1) as Keras ships labels
    dataset = _ingest(_write_npz(tmp_path / "d.npz", x=x, y=y))

    assert dataset.train_x.dtype == np.float32
    assert dataset.train_x.shape == (12, 5, 1, 1)
    assert dataset.train_x.max() == 5900.0
    np.testing.assert_array_equal(dataset.train_x[:, :, 0, 0], x.astype(np.float32))
    np.testing.assert_array_equal(dataset.train_y, _labels(12))
    _assert_round_trips(dataset, tmp_path)


def test_csv_with_the_default_label_column(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(12))
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n" + rows)
    dataset = _ingest(path)

    assert dataset.train_x.dtype == np.float32
    assert dataset.train_x.shape == (12, 2, 1, 1)
    np.testing.assert_array_equal(dataset.train_x[3, :, 0, 0], [3.0, 1.5])
    np.testing.assert_array_equal(dataset.train_y, _labels(12))
    assert (dataset.class_names, dataset.source_format, dataset.test_x) == (["0", "1"], "csv", None)
    _assert_round_trips(dataset, tmp_path)


def test_csv_with_a_named_label_column_a_bom_and_blank_lines(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 3},-{i}\n\n" for i in range(12))
    path = tmp_path / "upload"  # no extension: detected by content
    path.write_bytes("\ufefff1, target ,f2\n".encode() + rows.encode())
    dataset = _ingest(path, IngestOptions(label_column="target"))

    assert dataset.train_x.shape == (12, 2, 1, 1)
    np.testing.assert_array_equal(dataset.train_x[4, :, 0, 0], [4.0, -4.0])
    np.testing.assert_array_equal(dataset.train_y, _labels(12, 3))
    _assert_round_trips(dataset, tmp_path)


def test_zip_of_class_folders_resizes_to_the_most_common_size(tmp_path: Path) -> None:
    odd_sizes: Entries = [("pets/dog/small.png", _image_bytes(5, 5, "L", GRAY))]
    junk: Entries = [("__MACOSX/pets/cat/._0.png", b"\0\5\26\7"), ("pets/.DS_Store", b"\0\0\0\1")]
    jpeg: Entries = [("pets/dog/photo.JPG", _image_bytes(8, 6, "L", GRAY, "JPEG"))]
    path = _write_zip(tmp_path / "d.zip", _class_images("pets/") + odd_sizes + junk + jpeg)
    dataset = _ingest(path)

    assert dataset.train_x.dtype == np.uint8
    assert dataset.train_x.shape == (14, 3, 6, 8)  # RGB: not every image is grayscale
    assert dataset.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(dataset.train_y, [0] * 6 + [1] * 8)
    np.testing.assert_array_equal(dataset.train_x[0, :, 3, 3], RED)
    np.testing.assert_array_equal(dataset.train_x[-1, :, 3, 3], [GRAY] * 3)  # the resized one
    assert dataset.source_format == "zip"
    _assert_round_trips(dataset, tmp_path)


def test_zip_of_class_folders_resizes_to_an_explicit_size(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "d.zip", _class_images())
    dataset = _ingest(path, IngestOptions(image_size=(4, 9)))

    assert dataset.shape == (3, 4, 9)
    np.testing.assert_array_equal(dataset.train_x[0, :, 2, 7], RED)


def test_zip_with_train_and_test_folders(tmp_path: Path) -> None:
    gray = _image_bytes(7, 5, "L", GRAY)
    entries: Entries = [
        *[(f"data/train/{name}/{i}.png", gray) for name in ("b", "a") for i in range(6)],
        ("data/test/a/0.png", gray),
        ("data/test/c/0.png", gray),
    ]
    dataset = _ingest(_write_zip(tmp_path / "d.zip", entries))

    assert dataset.class_names == ["a", "b", "c"]
    assert dataset.train_x.shape == (12, 1, 5, 7)  # grayscale throughout: one channel
    assert dataset.test_x is not None
    assert dataset.test_y is not None
    assert dataset.test_x.shape == (2, 1, 5, 7)
    np.testing.assert_array_equal(dataset.test_y, [0, 2])
    assert int(dataset.train_x.min()) == int(dataset.train_x.max()) == GRAY
    _assert_round_trips(dataset, tmp_path)


# Bad npz -------------------------------------------------------------------------------------


def test_mismatched_lengths_are_refused(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((12, 4, 4), np.uint8), y=_labels(11))
    error = _refused(path)
    assert (error.status_code, error.message) == (422, "y has 11 labels for 12 samples in x")


@pytest.mark.parametrize(
    ("shape", "phrase"),
    [
        ((12,), "expected (N, D) feature vectors"),
        ((12, 1, 4, 4, 1), "expected (N, D) feature vectors"),
        ((12, 5, 6, 7), "cannot tell the channel axis"),
        ((0, 4), "x has no samples"),
    ],
)
def test_bad_sample_shapes_are_refused(tmp_path: Path, shape: tuple[int, ...], phrase: str) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros(shape, np.uint8), y=_labels(shape[0]))
    error = _refused(path)
    assert error.status_code == 422
    assert phrase in error.message


def test_a_test_split_with_another_sample_shape_is_refused(tmp_path: Path) -> None:
    path = _write_npz(
        tmp_path / "d.npz",
        x=np.zeros((12, 4, 4), np.uint8),
        y=_labels(12),
        x_test=np.zeros((3, 4, 5), np.uint8),
        y_test=_labels(3),
    )
    error = _refused(path)
    assert error.status_code == 422
    assert "x_test samples have shape (1, 4, 5) but x samples have (1, 4, 4)" in error.message


def test_x_test_without_y_test_is_refused(tmp_path: Path) -> None:
    x = np.zeros((12, 4), np.uint8)
    error = _refused(_write_npz(tmp_path / "d.npz", x=x, y=_labels(12), x_test=x))
    assert (error.status_code, error.message) == (
        422,
        "the npz has x_test but no y_test; give both or neither",
    )


def test_float_labels_are_refused_even_when_whole(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=_labels(12).astype(np.float64))
    error = _refused(path)
    assert error.status_code == 422
    assert "labels must be integers" in error.message


def test_negative_labels_are_refused(tmp_path: Path) -> None:
    y = _labels(12)
    y[7] = -1
    error = _refused(_write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=y))
    assert (error.status_code, error.message) == (422, "y[7] is -1: labels must be >= 0")


@pytest.mark.parametrize(
    ("value", "phrase"),
    [(np.nan, "x has NaN in sample 5"), (np.inf, "infinite"), (1e300, "beyond float32's range")],
)
def test_non_finite_features_are_refused(tmp_path: Path, value: float, phrase: str) -> None:
    x = np.zeros((12, 4))
    x[5, 2] = value
    error = _refused(_write_npz(tmp_path / "d.npz", x=x, y=_labels(12)))
    assert error.status_code == 422
    assert phrase in error.message


def test_a_single_class_is_refused(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=np.zeros(12, np.int64))
    error = _refused(path)
    assert (error.status_code, error.message) == (
        422,
        "the training split has 1 class (0); at least 2 are needed",
    )


def test_too_few_training_samples_are_refused(tmp_path: Path) -> None:
    error = _refused(_write_npz(tmp_path / "d.npz", x=np.zeros((9, 4)), y=_labels(9)))
    assert (error.status_code, error.message) == (
        422,
        "the training split has 9 samples; at least 10 are needed",
    )


def test_too_many_samples_are_refused(tmp_path: Path) -> None:
    x = np.zeros((12, 4))
    path = _write_npz(tmp_path / "d.npz", x=x, y=_labels(12), x_test=x, y_test=_labels(12))
    error = _refused(path, limits=IngestLimits(max_samples=20))
    assert error.status_code == 422
    assert "the dataset has 24 samples (12 train + 12 test); at most 20" in error.message


def test_too_many_classes_are_refused(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=_labels(12, 6))
    error = _refused(path, limits=IngestLimits(max_classes=5))
    assert error.status_code == 422
    assert "y[5] is 5: at most 5 classes are allowed" in error.message


def test_too_many_values_per_sample_are_refused(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((12, 3, 4, 4)), y=_labels(12))
    error = _refused(path, limits=IngestLimits(max_values_per_sample=40))
    assert error.status_code == 422
    assert "each sample has 48 values" in error.message


def test_pickled_object_arrays_are_refused(tmp_path: Path) -> None:
    x = np.empty(12, dtype=object)
    x[:] = [{"pixels": i} for i in range(12)]
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=_labels(12), allow_pickle=True)
    error = _refused(path)
    assert error.status_code == 422
    assert "x is an array of pickled Python objects" in error.message


def test_a_truncated_npz_is_refused(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((12, 40)), y=_labels(12))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    error = _refused(path)
    assert error.status_code == 422
    assert "'d.npz' is a corrupt or truncated zip" in error.message


def test_an_npy_holding_less_than_its_header_declares_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((12, 40)))
    y = io.BytesIO()
    np.save(y, _labels(12))
    x_npy = buffer.getvalue()[:-100]
    path = _write_zip(tmp_path / "d.npz", [("x.npy", x_npy), ("y.npy", y.getvalue())])
    error = _refused(path)
    assert error.status_code == 422
    assert "zip entry 'x.npy' holds 3740 bytes of data but its header declares" in error.message


def test_options_for_other_formats_are_refused(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=_labels(12))
    error = _refused(path, IngestOptions(label_column="target"))
    assert (error.status_code, error.message) == (
        422,
        "option label_column='target' applies only to CSV uploads",
    )


# Bad zips ------------------------------------------------------------------------------------


def test_a_corrupt_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.zip"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    error = _refused(path)
    assert error.status_code == 422
    assert "'d.zip' is a corrupt or truncated zip" in error.message


def test_an_entry_with_corrupt_bytes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in _class_images():
            archive.writestr(name, data)
    content = bytearray(path.read_bytes())
    content[100] ^= 0xFF  # inside cat/0.png's stored bytes: its CRC no longer matches
    path.write_bytes(bytes(content))
    error = _refused(path)
    assert error.status_code == 422
    assert "zip entry 'cat/0.png' is corrupt or truncated" in error.message


@pytest.mark.parametrize("name", ["../evil.png", "cat/../../evil.png", "/etc/x.png", "C:/x.png"])
def test_entries_outside_the_archive_are_refused(tmp_path: Path, name: str) -> None:
    path = _write_zip(tmp_path / "d.zip", [*_class_images(), (name, _image_bytes(8, 6))])
    error = _refused(path)
    assert error.status_code == 422
    assert f"zip entry {name!r} points outside the archive" in error.message


def test_a_symlink_entry_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("cat/link.png")
    link.create_system = 3  # Unix: external_attr holds st_mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _write_zip(tmp_path / "d.zip", [*_class_images(), (link, b"/etc/passwd")])
    error = _refused(path)
    assert (error.status_code, error.message) == (
        422,
        "zip entry 'cat/link.png' is a symbolic link; links are not accepted",
    )


def test_a_zip_bomb_by_compression_ratio_is_refused(tmp_path: Path) -> None:
    x = np.zeros((12, 200_000), np.uint8)  # 2.4 MB of zeros deflate to a few kB
    error = _refused(_write_npz(tmp_path / "d.npz", compressed=True, x=x, y=_labels(12)))
    assert error.status_code == 422
    assert "zip entry 'x.npy' expands" in error.message
    assert "zip bomb" in error.message


def test_too_many_zip_entries_are_refused(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "d.zip", _class_images())
    error = _refused(path, limits=IngestLimits(max_zip_entries=11))
    assert (error.status_code, error.message) == (
        413,
        "the zip has 12 entries; at most 11 are allowed",
    )


def test_too_many_uncompressed_bytes_are_refused(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=_labels(12))
    error = _refused(path, limits=IngestLimits(max_uncompressed_bytes=500))
    assert error.status_code == 413
    assert error.message.startswith("the zip expands to ")
    assert error.message.endswith(" bytes; at most 500 are allowed")


@pytest.mark.parametrize(
    ("side", "phrase"),
    [
        (5000, "declares 5000x5000 pixels; at most 16777216 pixels per image"),  # our cap
        (20000, "is a decompression bomb: Image size (400000000 pixels) exceeds"),  # Pillow's
    ],
)
def test_image_decompression_bombs_are_refused(tmp_path: Path, side: int, phrase: str) -> None:
    path = _write_zip(
        tmp_path / "d.zip", [*_class_images(), ("cat/bomb.png", _png_declaring(side, side))]
    )
    error = _refused(path)
    assert error.status_code == 422
    assert f"zip entry 'cat/bomb.png' {phrase}" in error.message
    assert Image.MAX_IMAGE_PIXELS == 89478485  # the global was left alone


@pytest.mark.parametrize(
    "data",
    [b"not an image at all", _image_bytes(8, 6)[:-30]],  # the second has a sound header
    ids=["garbage", "truncated"],
)
def test_undecodable_images_are_refused(tmp_path: Path, data: bytes) -> None:
    path = _write_zip(tmp_path / "d.zip", [*_class_images(), ("dog/broken.png", data)])
    error = _refused(path)
    assert error.status_code == 422
    assert "zip entry 'dog/broken.png' is not a decodable PNG or JPEG image" in error.message


def test_a_non_image_file_in_the_zip_is_refused(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "d.zip", [*_class_images(), ("cat/notes.txt", b"meow")])
    error = _refused(path)
    assert error.status_code == 422
    assert "zip entry 'cat/notes.txt' is not a PNG or JPEG image" in error.message


def test_images_outside_class_folders_are_refused(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "d.zip", [*_class_images(), ("stray.png", _image_bytes(8, 6))])
    error = _refused(path)
    assert error.status_code == 422
    assert "zip entry 'stray.png' is not in a class folder" in error.message


# Bad CSV and unknown formats -----------------------------------------------------------------


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.csv"
    path.write_text(text)
    return path


def _good_rows(count: int = 12) -> str:
    return "".join(f"{i},{i},{i % 2}\n" for i in range(count))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a,b,target\n" + _good_rows(),
            "the CSV has no label column 'label'; its header is 'a', 'b', 'target'",
        ),
        ("a,b,label\n" + _good_rows() + "1,abc,0\n", "line 14, column 'b': 'abc' is not a number"),
        (
            "a,b,label\n" + _good_rows() + "1,2,1.5\n",
            "line 14: label '1.5' is not an integer; labels are class numbers",
        ),
        (
            "a,b,label\n" + _good_rows() + ",2,1\n",
            "line 14, column 'a' is empty; features need values",
        ),
        ("a,b,label\n" + _good_rows() + "1,2\n", "line 14 has 2 cells; the header has 3 columns"),
        ("a,b,label\n" + _good_rows() + "1,nan,0\n", "line 14, column 'b': 'nan' is not a finite"),
        ("a,b,label\n", "the CSV has a header row but no data rows"),
    ],
    ids=[
        "no-label-column",
        "non-numeric",
        "non-integer-label",
        "empty-cell",
        "ragged",
        "nan",
        "no-rows",
    ],
)
def test_bad_csv_is_refused(tmp_path: Path, text: str, message: str) -> None:
    error = _refused(_csv(tmp_path, text))
    assert error.status_code == 422
    assert error.message.startswith(message)


@pytest.mark.parametrize("rows_before", [3, 20_000], ids=["in-the-sniffed-start", "further-on"])
def test_non_utf8_text_is_refused(tmp_path: Path, rows_before: int) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(("a,b,label\n" + _good_rows(rows_before)).encode() + b"1,caf\xe9,0\n")
    error = _refused(path)
    assert error.status_code == 422
    assert "not UTF-8 text" in error.message
    if rows_before > 3:  # past the sniffed start: the streaming reader names the line
        assert f"line {rows_before + 2} has byte 0xe9" in error.message


def test_too_many_csv_rows_are_refused_while_reading(tmp_path: Path) -> None:
    error = _refused(
        _csv(tmp_path, "a,b,label\n" + _good_rows(30)), limits=IngestLimits(max_samples=20)
    )
    assert (error.status_code, error.message) == (
        422,
        "the CSV has more than 20 samples; that is the limit",
    )


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (bytes(range(256)) * 4, "unknown format for 'upload.bin'"),
        (_image_bytes(8, 6), "expected an .npz of arrays x and y, a UTF-8 CSV"),
        (b"\x93NUMPY\x01\x00" + bytes(100), "save x and y together with np.savez"),
    ],
    ids=["binary", "single-png", "single-npy"],
)
def test_unknown_binary_formats_are_unsupported(
    tmp_path: Path, content: bytes, phrase: str
) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    error = _refused(path)
    assert error.status_code == 415
    assert phrase in error.message


def test_an_empty_upload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"")
    error = _refused(path)
    assert (error.status_code, error.message) == (422, "'d.csv' is empty")


def test_images_that_decode_to_more_than_the_cap_are_refused(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "d.zip", _class_images())  # 12 RGB images of 8x6
    limits = dataclasses.replace(LIMITS, max_uncompressed_bytes=12 * 3 * 8 * 6 - 1)

    error = _refused(path, limits=limits)

    assert error.status_code == 413
    assert "decode to 1728 bytes" in error.message
