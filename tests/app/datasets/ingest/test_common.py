"""The checks every format shares (classes, sample counts, values per sample), on npz uploads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taas.app.datasets.ingest import IngestLimits
from tests.app.datasets.ingest.uploads import labels, refused, write_npz


def test_a_single_class_is_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", x=np.zeros((12, 4)), y=np.zeros(12, np.int64))
    error = refused(path)
    assert (error.status_code, error.message) == (
        422,
        "the training split has 1 class (0); at least 2 are needed",
    )


def test_too_few_training_samples_are_refused(tmp_path: Path) -> None:
    error = refused(write_npz(tmp_path / "d.npz", x=np.zeros((9, 4)), y=labels(9)))
    assert (error.status_code, error.message) == (
        422,
        "the training split has 9 samples; at least 10 are needed",
    )


def test_too_many_samples_are_refused(tmp_path: Path) -> None:
    x = np.zeros((12, 4))
    path = write_npz(tmp_path / "d.npz", x=x, y=labels(12), x_test=x, y_test=labels(12))
    error = refused(path, limits=IngestLimits(max_samples=20))
    assert error.status_code == 422
    assert "the dataset has 24 samples (12 train + 12 test); at most 20" in error.message


def test_too_many_values_per_sample_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", x=np.zeros((12, 3, 4, 4)), y=labels(12))
    error = refused(path, limits=IngestLimits(max_values_per_sample=40))
    assert error.status_code == 422
    assert "each sample has 48 values" in error.message
