"""An .npz becomes the canonical dataset; a bad one is refused by name."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from taas.app.datasets.ingest import IngestLimits
from tests.app.datasets.ingest.uploads import (
    assert_round_trips,
    ingested,
    labels,
    refused,
    write_npz,
    write_zip,
)


def test_npz_grayscale_uint8_images_gain_a_channel_axis(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (12, 5, 7), dtype=np.uint8)  # (N, H, W)
    dataset = ingested(write_npz(tmp_path / "d.npz", x=x, y=labels(12, 3), extra=np.zeros(3)))

    assert dataset.train_x.dtype == np.uint8
    np.testing.assert_array_equal(dataset.train_x, x[:, None])  # (N, 1, H, W)
    assert dataset.train_y.dtype == np.int64
    np.testing.assert_array_equal(dataset.train_y, labels(12, 3))
    assert (dataset.class_names, dataset.num_classes, dataset.shape) == (
        ["0", "1", "2"],
        3,
        (1, 5, 7),
    )
    assert (dataset.train_size, dataset.test_size, dataset.test_x) == (12, 0, None)
    assert dataset.source_format == "npz"
    assert_round_trips(dataset, tmp_path)


def test_npz_channels_last_floats_become_nchw_float32(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((12, 4, 6, 3))  # (N, H, W, C) float64
    dataset = ingested(write_npz(tmp_path / "d.npz", x=x, y=labels(12)))

    assert dataset.train_x.dtype == np.float32
    assert dataset.shape == (3, 4, 6)
    np.testing.assert_array_equal(dataset.train_x, x.transpose(0, 3, 1, 2).astype(np.float32))
    assert_round_trips(dataset, tmp_path)


def test_npz_channels_first_with_a_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (12, 3, 4, 5), dtype=np.uint8)  # (N, C, H, W)
    x_test = rng.integers(0, 256, (5, 3, 4, 5), dtype=np.uint8)
    y_test = np.array([0, 1, 3, 1, 0], dtype=np.int32)  # class 3 appears only in the test split
    path = write_npz(
        tmp_path / "d.npz", compressed=True, x=x, y=labels(12), x_test=x_test, y_test=y_test
    )
    dataset = ingested(path)

    np.testing.assert_array_equal(dataset.train_x, x)
    assert dataset.test_x is not None
    assert dataset.test_y is not None
    np.testing.assert_array_equal(dataset.test_x, x_test)
    assert dataset.test_y.dtype == np.int64
    np.testing.assert_array_equal(dataset.test_y, y_test)
    assert (dataset.train_size, dataset.test_size, dataset.num_classes) == (12, 5, 4)
    assert_round_trips(dataset, tmp_path)


def test_npz_feature_vectors_become_float32_without_wrapping(tmp_path: Path) -> None:
    x = np.arange(12 * 5, dtype=np.int64).reshape(12, 5) * 100  # (N, D), values up to 5900
    y = labels(12).reshape(12, 1).astype(np.uint8)  # (N, 1) as Keras ships labels
    dataset = ingested(write_npz(tmp_path / "d.npz", x=x, y=y))

    assert dataset.train_x.dtype == np.float32
    assert dataset.train_x.shape == (12, 5, 1, 1)
    assert dataset.train_x.max() == 5900.0
    np.testing.assert_array_equal(dataset.train_x[:, :, 0, 0], x.astype(np.float32))
    np.testing.assert_array_equal(dataset.train_y, labels(12))
    assert_round_trips(dataset, tmp_path)


def test_mismatched_lengths_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", x=np.zeros((12, 4, 4), np.uint8), y=labels(11))
    error = refused(path)
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
    path = write_npz(tmp_path / "d.npz", x=np.zeros(shape, np.uint8), y=labels(shape[0]))
    error = refused(path)
    assert error.status_code == 422
    assert phrase in error.message


def test_a_test_split_with_another_sample_shape_is_refused(tmp_path: Path) -> None:
    path = write_npz(
        tmp_path / "d.npz",
        x=np.zeros((12, 4, 4), np.uint8),
        y=labels(12),
        x_test=np.zeros((3, 4, 5), np.uint8),
        y_test=labels(3),
    )
    error = refused(path)
    assert error.status_code == 422
    assert "x_test samples have shape (1, 4, 5) but x samples have (1, 4, 4)" in error.message


def test_x_test_without_y_test_is_refused(tmp_path: Path) -> None:
    x = np.zeros((12, 4), np.uint8)
    error = refused(write_npz(tmp_path / "d.npz", x=x, y=labels(12), x_test=x))
    assert (error.status_code, error.message) == (
        422,
        "the npz has x_test but no y_test; give both or neither",
    )


def test_float_labels_are_refused_even_when_whole(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=labels(12).astype(np.float64))
    error = refused(path)
    assert error.status_code == 422
    assert "labels must be integers" in error.message


def test_negative_labels_are_refused(tmp_path: Path) -> None:
    y = labels(12)
    y[7] = -1
    error = refused(write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=y))
    assert (error.status_code, error.message) == (422, "y[7] is -1: labels must be >= 0")


@pytest.mark.parametrize(
    ("value", "phrase"),
    [(np.nan, "x has NaN in sample 5"), (np.inf, "infinite"), (1e300, "beyond float32's range")],
)
def test_non_finite_features_are_refused(tmp_path: Path, value: float, phrase: str) -> None:
    x = np.zeros((12, 4))
    x[5, 2] = value
    error = refused(write_npz(tmp_path / "d.npz", x=x, y=labels(12)))
    assert error.status_code == 422
    assert phrase in error.message


def test_too_many_classes_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=labels(12, 6))
    error = refused(path, limits=IngestLimits(max_classes=5))
    assert error.status_code == 422
    assert "y[5] is 5: at most 5 classes are allowed" in error.message


def test_pickled_object_arrays_are_refused(tmp_path: Path) -> None:
    x = np.empty(12, dtype=object)
    x[:] = [{"pixels": i} for i in range(12)]
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=labels(12), allow_pickle=True)
    error = refused(path)
    assert error.status_code == 422
    assert "x is an array of pickled Python objects" in error.message


def test_an_npy_holding_less_than_its_header_declares_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((12, 40)))
    y = io.BytesIO()
    np.save(y, labels(12))
    x_npy = buffer.getvalue()[:-100]
    path = write_zip(tmp_path / "d.npz", [("x.npy", x_npy), ("y.npy", y.getvalue())])
    error = refused(path)
    assert error.status_code == 422
    assert "zip entry 'x.npy' holds 3740 bytes of data but its header declares" in error.message
