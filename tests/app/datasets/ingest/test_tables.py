"""A CSV becomes the canonical dataset; a bad one is refused by name, with its line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taas.app.datasets.ingest import IngestLimits, IngestOptions
from tests.app.datasets.ingest.uploads import assert_round_trips, ingested, labels, refused


def test_csv_with_the_default_label_column(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(12))
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n" + rows)
    dataset = ingested(path)

    assert dataset.train_x.dtype == np.float32
    assert dataset.train_x.shape == (12, 2, 1, 1)
    np.testing.assert_array_equal(dataset.train_x[3, :, 0, 0], [3.0, 1.5])
    np.testing.assert_array_equal(dataset.train_y, labels(12))
    assert (dataset.class_names, dataset.source_format, dataset.test_x) == (["0", "1"], "csv", None)
    assert_round_trips(dataset, tmp_path)


def test_csv_with_a_named_label_column_a_bom_and_blank_lines(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 3},-{i}\n\n" for i in range(12))
    path = tmp_path / "upload"  # no extension: detected by content
    path.write_bytes("\ufefff1, target ,f2\n".encode() + rows.encode())
    dataset = ingested(path, IngestOptions(label_column="target"))

    assert dataset.train_x.shape == (12, 2, 1, 1)
    np.testing.assert_array_equal(dataset.train_x[4, :, 0, 0], [4.0, -4.0])
    np.testing.assert_array_equal(dataset.train_y, labels(12, 3))
    assert_round_trips(dataset, tmp_path)


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
    error = refused(_csv(tmp_path, text))
    assert error.status_code == 422
    assert error.message.startswith(message)


@pytest.mark.parametrize("rows_before", [3, 20_000], ids=["in-the-sniffed-start", "further-on"])
def test_non_utf8_text_is_refused(tmp_path: Path, rows_before: int) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(("a,b,label\n" + _good_rows(rows_before)).encode() + b"1,caf\xe9,0\n")
    error = refused(path)
    assert error.status_code == 422
    assert "not UTF-8 text" in error.message
    if rows_before > 3:  # past the sniffed start: the streaming reader names the line
        assert f"line {rows_before + 2} has byte 0xe9" in error.message


def test_too_many_csv_rows_are_refused_while_reading(tmp_path: Path) -> None:
    error = refused(
        _csv(tmp_path, "a,b,label\n" + _good_rows(30)), limits=IngestLimits(max_samples=20)
    )
    assert (error.status_code, error.message) == (
        422,
        "the CSV has more than 20 samples; that is the limit",
    )
