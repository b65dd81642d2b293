"""A CSV upload: a header row, one label column of class numbers, every other column a numeric
feature. Read as a stream, row by row, into (N, D, 1, 1) float32 features and (N,) int64 labels.
(Named for what it reads, so that `import csv` here is the standard library's.)"""

from __future__ import annotations

import csv
import math
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from taas.app.datasets.ingest.common import (
    CanonicalDataset,
    IngestLimits,
    InvalidDataset,
    check_sample_counts,
    check_sample_values,
    check_two_classes,
    numbered_classes,
    preview,
)

FLOAT32_MAX = float(np.finfo(np.float32).max)
DEFAULT_LABEL_COLUMN = "label"


def read_csv(path: Path, label_column: str, limits: IngestLimits) -> CanonicalDataset:
    """A header row, a label column, every other column a numeric feature: (N, D, 1, 1) float32."""
    with path.open("rb") as binary:
        rows = _csv_rows(binary)
        header = _csv_header(next(rows, None), label_column, limits)
        label_index = header.index(label_column)
        feature_names = header[:label_index] + header[label_index + 1 :]
        features, labels = _csv_samples(rows, label_index, feature_names, limits)
    if not labels:
        raise InvalidDataset(422, "the CSV has a header row but no data rows")
    check_sample_counts(len(labels), 0, limits)
    train_x = np.frombuffer(features, dtype=np.float32).reshape(len(labels), -1, 1, 1)
    train_y = np.frombuffer(labels, dtype=np.int64)
    check_two_classes({str(label) for label in set(labels)})
    return CanonicalDataset(train_x, train_y, None, None, numbered_classes(train_y, None), "csv")


def _csv_rows(binary: IO[bytes]) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows, each with the line it ends on (what an editor shows)."""
    reader = csv.reader(_utf8_lines(binary))
    try:
        for cells in reader:
            if cells:
                yield reader.line_num, cells
    except csv.Error as error:
        raise InvalidDataset(
            422, f"the CSV is malformed near line {reader.line_num + 1}: {error}"
        ) from error


def _utf8_lines(binary: IO[bytes]) -> Iterator[str]:
    """Decoded one line at a time, so a bad byte is reported with its line; drops a BOM."""
    for number, line in enumerate(binary, start=1):
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise InvalidDataset(
                422,
                f"the CSV is not UTF-8 text: line {number} has byte {line[error.start]:#04x} "
                f"({error.reason}); save it as UTF-8",
            ) from error
        yield text


def _csv_header(
    row: tuple[int, list[str]] | None, label_column: str, limits: IngestLimits
) -> list[str]:
    if row is None:
        raise InvalidDataset(422, "the CSV is empty; expected a header row naming the columns")
    header = [name.strip() for name in row[1]]
    if header.count(label_column) != 1:
        if label_column in header:
            raise InvalidDataset(
                422, f"the CSV header names {label_column!r} more than once; which is the label?"
            )
        raise InvalidDataset(
            422,
            f"the CSV has no label column {label_column!r}; its header is {preview(header, 20)}",
        )
    if len(header) == 1:
        raise InvalidDataset(
            422, f"the CSV has only the label column {label_column!r}; no features"
        )
    check_sample_values((len(header) - 1, 1, 1), limits)
    return header


def _csv_samples(
    rows: Iterator[tuple[int, list[str]]],
    label_index: int,
    feature_names: list[str],
    limits: IngestLimits,
) -> tuple[array[float], array[int]]:
    """Features row-major (N * D float32) and labels (N int64), in compact arrays: 4 bytes a value
    however the CSV spelled it. Stops at max_samples rather than reading on."""
    features: array[float] = array("f")
    labels: array[int] = array("q")
    columns = len(feature_names) + 1
    for line, cells in rows:
        if len(cells) != columns:
            raise InvalidDataset(
                422, f"line {line} has {len(cells)} cells; the header has {columns} columns"
            )
        if len(labels) == limits.max_samples:
            raise InvalidDataset(
                422, f"the CSV has more than {limits.max_samples} samples; that is the limit"
            )
        labels.append(_csv_label(cells.pop(label_index), line, limits))
        features.extend(
            _csv_feature(cell, name, line) for cell, name in zip(cells, feature_names, strict=True)
        )
    return features, labels


def _csv_label(cell: str, line: int, limits: IngestLimits) -> int:
    try:
        label = int(cell)
    except ValueError:
        raise InvalidDataset(
            422, f"line {line}: label {cell!r} is not an integer; labels are class numbers"
        ) from None
    if label < 0:
        raise InvalidDataset(422, f"line {line}: label {label} is negative; labels must be >= 0")
    if label >= limits.max_classes:
        raise InvalidDataset(
            422,
            f"line {line}: label {label} is too large; at most {limits.max_classes} classes are "
            f"allowed (labels 0 to {limits.max_classes - 1})",
        )
    return label


def _csv_feature(cell: str, column: str, line: int) -> float:
    if not cell.strip():
        raise InvalidDataset(422, f"line {line}, column {column!r} is empty; features need values")
    try:
        value = float(cell)
    except ValueError:
        raise InvalidDataset(
            422, f"line {line}, column {column!r}: {cell!r} is not a number"
        ) from None
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise InvalidDataset(
            422, f"line {line}, column {column!r}: {cell!r} is not a finite float32 number"
        )
    return value
