"""Uploaded training data -> one canonical, validated dataset the trainer reads.

An upload is an .npz (arrays x, y and optional x_test, y_test), a CSV with a label column, or a zip
of PNG/JPEG images in one folder per class. Nothing in it is trusted: a zip's central directory
(names, links, declared sizes) is checked before any entry is decompressed, a .npy header before
its data, an image header before its pixels. Every refusal is an InvalidDataset carrying the HTTP
status the API answers with and a message naming the problem.

What lives where: the limits, options, result type, refusal and checks every format shares
(``common``); which format an upload is and which reader takes it, ``ingest()`` (``dispatch``);
the zip checks made before any entry is decompressed (``archives``); one reader per format
(``npz``, ``tables`` for CSV, ``images`` for zips of class folders); and the canonical
safetensors file the worker reads, ``write_canonical()`` (``canonical``). Callers import the
names below from here.

May import: numpy, Pillow, safetensors and the standard library; no HTTP, no database, no torch.
The format readers import ``common`` and ``archives``, never each other.
"""

from taas.app.datasets.ingest.canonical import write_canonical
from taas.app.datasets.ingest.common import (
    CanonicalDataset,
    IngestLimits,
    IngestOptions,
    InvalidDataset,
)
from taas.app.datasets.ingest.dispatch import ingest

__all__ = [
    "CanonicalDataset",
    "IngestLimits",
    "IngestOptions",
    "InvalidDataset",
    "ingest",
    "write_canonical",
]
