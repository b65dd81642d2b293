"""Where the built-in datasets' files are on this server, and whether they are all there.

Kept apart from the trainer (worker.trainer.data decodes the files and needs torch): the API asks
`available` for every dataset listing, and must not load torch to answer.
"""

from __future__ import annotations

from pathlib import Path

from taas.app.spec import BUILTIN_DATASETS

# Debian's dataset-fashion-mnist package installs the IDX files here.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# torchvision's folder names under the data dir: <data_dir>/<folder>/raw/<idx files>.
TORCHVISION_FOLDERS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}

# The four IDX files of an MNIST-style dataset, each with and without ".gz".
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}

# CIFAR-10's two distributions, as extracted under the data dir: (folder, batch file suffix).
# The binary one comes first: reading it needs no unpickling at all.
CIFAR_BIN_FOLDER = "cifar-10-batches-bin"
CIFAR_PY_FOLDER = "cifar-10-batches-py"
CIFAR_LAYOUTS = ((CIFAR_BIN_FOLDER, ".bin"), (CIFAR_PY_FOLDER, ""))
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"

# Built-ins that can be downloaded, by the name of their torchvision.datasets class.
DOWNLOADABLE = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10"}


class DatasetUnavailable(Exception):
    """The dataset cannot be loaded on this server; the message says what to do about it."""


def available(name: str, data_dir: Path | None, allow_download: bool = False) -> tuple[bool, str]:
    """Whether the trainer's load_dataset can load the built-in dataset `name`, and why (not)."""
    if name == "synthetic":
        return True, "generated from the job's dataset_options"
    if name not in DOWNLOADABLE:
        return False, f"dataset {name!r} is not built in; try one of {', '.join(BUILTIN_DATASETS)}"
    try:
        folder = find_folder(name, data_dir)
    except DatasetUnavailable as missing:
        if allow_download and data_dir is not None:
            return True, f"downloaded into {data_dir} on first use"
        return False, f"{missing}{download_hint(data_dir)}"
    kind = "CIFAR-10 batches" if name == "cifar10" else "IDX files"
    return True, f"{kind} in {folder}"


def report(data_dir: Path | None, allow_download: bool) -> dict[str, dict[str, object]]:
    """Whether each built-in's files are here, as a worker tells the API (its presence)."""
    found = {}
    for name in BUILTIN_DATASETS:
        ready, reason = available(name, data_dir, allow_download=allow_download)
        found[name] = {"available": ready, "reason": reason}
    return found


def find_folder(name: str, data_dir: Path | None) -> Path:
    """The folder holding all of `name`'s files, or DatasetUnavailable saying where to put them."""
    if name == "cifar10":
        return find_cifar_folder(data_dir)
    return find_idx_folder(name, data_dir)


def download_hint(data_dir: Path | None) -> str:
    if data_dir is None:
        return "; or set TAAS_DATA_DIR and TAAS_ALLOW_DOWNLOAD=true to have it downloaded there"
    return f"; or set TAAS_ALLOW_DOWNLOAD=true to have it downloaded into {data_dir}"


# --- IDX files (MNIST, Fashion-MNIST) ----------------------------------------------------------


def idx_folders(name: str, data_dir: Path | None) -> list[Path]:
    """Where to look for `name`'s IDX files, in order of preference."""
    folders = []
    if data_dir is not None:
        folders.append(data_dir / TORCHVISION_FOLDERS[name] / "raw")
    if name == "fashion_mnist":
        folders.append(SYSTEM_FASHION_MNIST)
    return folders


def idx_path(folder: Path, stem: str) -> Path | None:
    # torchvision keeps both the .gz and its extracted copy; the extracted one reads faster.
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_folder(name: str, data_dir: Path | None) -> Path:
    """The first folder that holds all four IDX files of `name`."""
    folders = idx_folders(name, data_dir)
    for folder in folders:
        if all(idx_path(folder, stem) is not None for stem in IDX_FILES.values()):
            return folder
    looked = ", ".join(str(folder) for folder in folders) or "nowhere (no data dir is configured)"
    hint = f"put {', '.join(f'{stem}.gz' for stem in IDX_FILES.values())} in one of them"
    if data_dir is None:
        subfolder = TORCHVISION_FOLDERS[name]
        hint += f", after setting TAAS_DATA_DIR (they go in <data dir>/{subfolder}/raw)"
    if name == "fashion_mnist":
        hint += ", or install Debian's dataset-fashion-mnist package"
    raise DatasetUnavailable(f"{name} IDX files not found; looked in {looked}; {hint}")


# --- CIFAR-10 batches (binary and Python versions) ---------------------------------------------


def cifar_batch_paths(folder: Path, suffix: str) -> list[Path]:
    """The five training batches, then the test batch."""
    return [folder / f"{stem}{suffix}" for stem in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)]


def find_cifar_folder(data_dir: Path | None) -> Path:
    """The first of CIFAR_LAYOUTS under data_dir that holds all six batch files."""
    if data_dir is None:
        raise DatasetUnavailable(
            "cifar10 batches not found: no data dir is configured; set TAAS_DATA_DIR and put "
            f"{CIFAR_BIN_FOLDER}/ or {CIFAR_PY_FOLDER}/ (as extracted from CIFAR-10's archives) "
            "in it"
        )
    for folder_name, suffix in CIFAR_LAYOUTS:
        folder = data_dir / folder_name
        if all(path.is_file() for path in cifar_batch_paths(folder, suffix)):
            return folder
    binary, python = (data_dir / folder_name for folder_name, _ in CIFAR_LAYOUTS)
    raise DatasetUnavailable(
        f"cifar10 batches not found; looked in {binary} and {python}; put "
        "data_batch_1.bin ... data_batch_5.bin and test_batch.bin (the binary version) in the "
        "first, or data_batch_1 ... data_batch_5 and test_batch (the Python version) in the second"
    )
