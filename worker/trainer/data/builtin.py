"""The built-in datasets by name: found in the data dir (or the system copy), downloaded with
torchvision when allowed, and read by the reader of their format."""

from __future__ import annotations

import fcntl
from pathlib import Path

from taas.app.spec import BUILTIN_DATASETS, JobSpec, SyntheticOptions, dataset_info
from taas.worker.datasets.files import (
    DOWNLOADABLE,
    DatasetUnavailable,
    download_hint,
    find_folder,
)
from taas.worker.trainer.data.cifar import load_cifar_dataset
from taas.worker.trainer.data.dataset import Dataset
from taas.worker.trainer.data.idx import load_idx_dataset
from taas.worker.trainer.data.synthetic import synthetic_dataset


def load_dataset(spec: JobSpec, data_dir: Path | None, allow_download: bool = False) -> Dataset:
    """The built-in dataset the spec names, or DatasetUnavailable saying why not.

    With ``allow_download`` and a data dir, a missing dataset is downloaded into it first.
    """
    name = spec.dataset
    if name not in BUILTIN_DATASETS:
        raise DatasetUnavailable(
            f"dataset {name!r} is not built in; this trainer loads {', '.join(BUILTIN_DATASETS)}"
        )
    info = dataset_info(spec)
    if name == "synthetic":
        return synthetic_dataset(info, spec.dataset_options or SyntheticOptions())
    folder = _find_or_download(name, data_dir, allow_download)
    if name == "cifar10":
        return load_cifar_dataset(info, folder)
    return load_idx_dataset(info, folder)


def _find_or_download(name: str, data_dir: Path | None, allow_download: bool) -> Path:
    try:
        return find_folder(name, data_dir)
    except DatasetUnavailable as missing:
        if not allow_download or data_dir is None:
            raise DatasetUnavailable(f"{missing}{download_hint(data_dir)}") from None
    download_builtin(name, data_dir)
    return find_folder(name, data_dir)


def download_builtin(name: str, data_dir: Path) -> None:
    """Download `name` into data_dir with torchvision, which writes the layout find_folder reads.

    A lock file serializes workers sharing the data dir: one downloads, the others then find it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / f".{name}.download-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if _has_files(name, data_dir):
            return  # another worker downloaded it while this one waited
        try:
            _torchvision_download(name, data_dir)
        except (OSError, RuntimeError) as error:  # torchvision's errors for a failed fetch
            message = f"downloading {name} into {data_dir} failed: {error}"
            raise DatasetUnavailable(message) from error


def _has_files(name: str, data_dir: Path) -> bool:
    try:
        find_folder(name, data_dir)
    except DatasetUnavailable:
        return False
    return True


def _torchvision_download(name: str, data_dir: Path) -> None:
    # Imported here: only a download needs torchvision.datasets (and the network).
    from torchvision import datasets

    dataset_class = getattr(datasets, DOWNLOADABLE[name])
    dataset_class(root=data_dir, download=True)
