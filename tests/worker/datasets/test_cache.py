"""The worker's dataset cache: one download per sha256, verified before use, nothing kept from a
corrupted download."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from taas.worker.datasets.cache import cached_dataset
from taas.worker.reporter import DatasetRef
from taas.worker.trainer.data import DatasetUnavailable

CONTENT = b"canonical dataset bytes" * 100
ROOT = Path(__file__).resolve().parents[3]


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

    with cached_dataset(ref, tmp_path, download, lines.append) as first:
        assert first.read_bytes() == CONTENT
    with cached_dataset(ref, tmp_path, download, lines.append) as second:
        assert second == first
    assert download.calls == 1
    assert "downloaded" in lines[0]
    assert "cache" in lines[1]


def test_a_corrupted_download_is_refused_and_not_kept(tmp_path: Path) -> None:
    download = CountingDownload(CONTENT[:-1] + b"!")

    with (
        pytest.raises(DatasetUnavailable, match="corrupted"),
        cached_dataset(ref_for(CONTENT), tmp_path, download, print),
    ):
        pass

    assert [path.name for path in tmp_path.iterdir() if not path.name.endswith(".lock")] == []
    good = CountingDownload(CONTENT)
    with cached_dataset(ref_for(CONTENT), tmp_path, good, print):
        pass
    assert good.calls == 1  # the bad bytes were not cached


def test_a_malformed_digest_never_becomes_a_file_name(tmp_path: Path) -> None:
    ref = DatasetRef("ds_" + "a" * 24, "../../etc/passwd", 1)

    with (
        pytest.raises(DatasetUnavailable, match="malformed"),
        cached_dataset(ref, tmp_path, CountingDownload(CONTENT), print),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


def fetch(content: bytes, cache: Path, max_bytes: int) -> CountingDownload:
    """Use a dataset of ``content`` once through a cache bounded to ``max_bytes``."""
    download = CountingDownload(content)
    with cached_dataset(ref_for(content), cache, download, print, max_bytes=max_bytes) as path:
        assert path.read_bytes() == content
    return download


def cached(cache: Path) -> set[bytes]:
    return {path.read_bytes() for path in cache.glob("*.safetensors")}


def test_the_least_recently_used_datasets_are_evicted_past_the_bound(tmp_path: Path) -> None:
    first, second, third = (bytes([n]) * 1000 for n in (1, 2, 3))
    fetch(first, tmp_path, max_bytes=2500)
    fetch(second, tmp_path, max_bytes=2500)
    assert fetch(first, tmp_path, max_bytes=2500).calls == 0  # a hit: now the most recent

    fetch(third, tmp_path, max_bytes=2500)

    assert cached(tmp_path) == {first, third}  # the second was used longest ago
    assert fetch(second, tmp_path, max_bytes=2500).calls == 1  # downloaded again
    assert cached(tmp_path) == {third, second}


def test_a_dataset_larger_than_the_bound_is_kept_while_it_is_used(tmp_path: Path) -> None:
    small, large = b"s" * 100, b"L" * 5000
    fetch(small, tmp_path, max_bytes=1000)

    fetch(large, tmp_path, max_bytes=1000)

    assert cached(tmp_path) == {large}


READER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from taas.worker.datasets.cache import cached_dataset
from taas.worker.reporter import DatasetRef
ref = DatasetRef("ds_x", sys.argv[3], 1)
with cached_dataset(ref, Path(sys.argv[2]), None, lambda line: None):
    print("reading", flush=True)
    time.sleep(60)
"""


def test_a_dataset_another_worker_is_reading_is_not_evicted(tmp_path: Path) -> None:
    busy, other = b"b" * 1000, b"o" * 1000
    fetch(busy, tmp_path, max_bytes=10_000)
    command = [sys.executable, "-c", READER, str(ROOT), str(tmp_path), ref_for(busy).sha256]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as reader:
        try:
            assert reader.stdout is not None
            assert reader.stdout.readline().strip() == "reading"

            fetch(other, tmp_path, max_bytes=1000)  # over the bound: the busy one would go first

            assert cached(tmp_path) == {busy, other}
        finally:
            reader.kill()
    fetch(other, tmp_path, max_bytes=1000)  # no reader now: evicted
    assert cached(tmp_path) == {other}
