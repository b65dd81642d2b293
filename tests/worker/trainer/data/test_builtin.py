"""Built-in datasets by name: what is built in, and downloads when allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from taas.app.spec import JobSpec
from taas.worker.datasets import files as dataset_files
from taas.worker.trainer.data import DatasetUnavailable, available, builtin, load_dataset
from tests.worker.trainer.data.writers import write_cifar_bin, write_cifar_py, write_mnist


def test_unknown_datasets_are_not_built_in() -> None:
    with pytest.raises(DatasetUnavailable, match="'ds_123' is not built in"):
        load_dataset(JobSpec(dataset="ds_123"), None)
    assert available("synthetic", None)[0]
    assert not available("ds_123", None)[0]


# --- downloads -------------------------------------------------------------------------------


class FakeDownload:
    """Stands in for torchvision's download: records the call and writes a tiny copy."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, Path]] = []
        self.error = error

    def __call__(self, name: str, data_dir: Path) -> None:
        self.calls.append((name, data_dir))
        if self.error is not None:
            raise self.error
        if name == "cifar10":
            write_cifar_py(data_dir)  # torchvision extracts the Python version
        else:
            write_mnist(data_dir / dataset_files.TORCHVISION_FOLDERS[name] / "raw", gz=True)


@pytest.fixture
def download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeDownload:
    fake = FakeDownload()
    monkeypatch.setattr(builtin, "_torchvision_download", fake)
    monkeypatch.setattr(dataset_files, "SYSTEM_FASHION_MNIST", tmp_path / "no-system-copy")
    return fake


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_builtin_is_downloaded_once_when_allowed(
    tmp_path: Path, download: FakeDownload, name: str
) -> None:
    data_dir = tmp_path / "data"
    assert available(name, data_dir, allow_download=True) == (
        True,
        f"downloaded into {data_dir} on first use",
    )

    first = load_dataset(JobSpec(dataset=name), data_dir, allow_download=True)
    second = load_dataset(JobSpec(dataset=name), data_dir, allow_download=True)

    assert download.calls == [(name, data_dir)]
    assert torch.equal(first.train_x, second.train_x)
    assert first.info.train_size == (11 if name == "cifar10" else 20)
    assert available(name, data_dir, allow_download=True)[1] != (
        f"downloaded into {data_dir} on first use"
    )


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_builtin_is_not_downloaded_unless_allowed(
    tmp_path: Path, download: FakeDownload, name: str
) -> None:
    hint = f"set TAAS_ALLOW_DOWNLOAD=true to have it downloaded into {tmp_path}"

    with pytest.raises(DatasetUnavailable, match=hint):
        load_dataset(JobSpec(dataset=name), tmp_path)
    ok, reason = available(name, tmp_path)

    assert not ok
    assert hint in reason
    assert download.calls == []


def test_download_needs_a_data_dir(download: FakeDownload) -> None:
    with pytest.raises(DatasetUnavailable, match="set TAAS_DATA_DIR and TAAS_ALLOW_DOWNLOAD"):
        load_dataset(JobSpec(dataset="mnist"), None, allow_download=True)
    assert available("mnist", None, allow_download=True)[0] is False
    assert download.calls == []


def test_builtin_already_present_is_not_downloaded(tmp_path: Path, download: FakeDownload) -> None:
    write_cifar_bin(tmp_path)

    load_dataset(JobSpec(dataset="cifar10"), tmp_path, allow_download=True)

    assert download.calls == []


def test_failed_download_raises_dataset_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = FakeDownload(error=OSError("Network is unreachable"))
    monkeypatch.setattr(builtin, "_torchvision_download", failing)

    message = f"downloading cifar10 into {tmp_path} failed: Network is unreachable"
    with pytest.raises(DatasetUnavailable, match=message):
        load_dataset(JobSpec(dataset="cifar10"), tmp_path, allow_download=True)
    assert len(failing.calls) == 1
