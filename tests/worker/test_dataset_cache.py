"""The worker's dataset cache: one download per sha256, verified before use, nothing kept from a
corrupted download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from worker.dataset_cache import cached_dataset
from worker.reporter import DatasetRef
from worker.trainer.data import DatasetUnavailable

CONTENT = b"canonical dataset bytes" * 100


class CountingDownload:
    def __init__(self, content: bytes) -> None:
        self.content, self.calls = content, 0

    def __call__(self, destination: Path) -> None:
        self.calls += 1
        destination.write_bytes(self.content)


def ref_for(content: bytes) -> DatasetRef:
    return DatasetRef("ds_" + "a" * 24, hashlib.sha256(content).hexdigest(), len(content))


def test_two_jobs_on_one_dataset_download_it_once(tmp_path: Path) -> None:
    download, lines = CountingDownload(CONTENT), []
    ref = ref_for(CONTENT)

    first = cached_dataset(ref, tmp_path, download, lines.append)
    second = cached_dataset(ref, tmp_path, download, lines.append)

    assert first == second
    assert first.read_bytes() == CONTENT
    assert download.calls == 1
    assert "downloaded" in lines[0]
    assert "cache" in lines[1]


def test_a_corrupted_download_is_refused_and_not_kept(tmp_path: Path) -> None:
    download = CountingDownload(CONTENT[:-1] + b"!")

    with pytest.raises(DatasetUnavailable, match="corrupted"):
        cached_dataset(ref_for(CONTENT), tmp_path, download, print)

    assert [path.name for path in tmp_path.iterdir() if not path.name.endswith(".lock")] == []
    good = CountingDownload(CONTENT)
    cached_dataset(ref_for(CONTENT), tmp_path, good, print)
    assert good.calls == 1  # the bad bytes were not cached


def test_a_malformed_digest_never_becomes_a_file_name(tmp_path: Path) -> None:
    ref = DatasetRef("ds_" + "a" * 24, "../../etc/passwd", 1)

    with pytest.raises(DatasetUnavailable, match="malformed"):
        cached_dataset(ref, tmp_path, CountingDownload(CONTENT), print)
    assert list(tmp_path.iterdir()) == []
