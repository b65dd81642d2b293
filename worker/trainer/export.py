"""Model artifacts: weights as safetensors plus a model.json that says how to rebuild and use them.

Nothing here unpickles: weights load with safetensors, metadata with json.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from app.spec import JobSpec, normalized
from worker.trainer.data import Dataset, Preprocess
from worker.trainer.loop import TrainResult
from worker.trainer.networks import build_network

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"


def write_model_files(
    result: TrainResult, spec: JobSpec, dataset: Dataset, out_dir: Path
) -> list[Path]:
    """Write model.safetensors, then model.json, each atomically; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path, metadata_path = out_dir / WEIGHTS_FILE, out_dir / METADATA_FILE
    tensors = {
        name: tensor.detach().to("cpu").contiguous()
        for name, tensor in result.model.state_dict().items()
    }
    with _atomic_path(weights_path) as temporary:
        safetensors.torch.save_file(tensors, str(temporary), metadata={"format": "pt"})
    metadata = model_metadata(result, spec, dataset)
    with _atomic_path(metadata_path) as temporary:
        temporary.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return [weights_path, metadata_path]


def model_metadata(result: TrainResult, spec: JobSpec, dataset: Dataset) -> dict[str, Any]:
    """The model.json document: everything needed to rebuild the network and feed it inputs."""
    info = dataset.info
    return {
        "format_version": FORMAT_VERSION,
        "spec": normalized(spec),
        "arch": spec.model.arch,
        "input_shape": list(info.shape),  # [C, H, W]
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "preprocess": result.preprocess.to_json(),
        "metrics": {
            "test_accuracy": result.test_accuracy,
            "test_loss": result.test_loss,
            "epochs_completed": result.epochs_completed,
            "stop_reason": result.stop_reason,
        },
        "parameter_count": result.parameter_count,
        "versions": library_versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def library_versions() -> dict[str, str]:
    try:
        taas = importlib.metadata.version("taas")
    except importlib.metadata.PackageNotFoundError:
        taas = "unknown"  # running from a source checkout that was never installed
    return {
        "taas": taas,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }


def load_model(folder: Path) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    """The network saved in `folder`: (module on CPU in eval mode, preprocess, model.json dict)."""
    metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    if metadata.get("format_version") != FORMAT_VERSION:
        found = metadata.get("format_version")
        raise ValueError(f"{folder / METADATA_FILE} has format_version={found!r}, expected 1")
    spec = JobSpec.model_validate(metadata["spec"])
    channels, height, width = metadata["input_shape"]
    model = build_network(spec.model, (channels, height, width), metadata["num_classes"])
    weights = safetensors.torch.load_file(str(folder / WEIGHTS_FILE), device="cpu")
    model.load_state_dict(weights, strict=True)  # missing or extra tensors are an error
    return model.eval(), Preprocess.from_json(metadata["preprocess"]), metadata


@contextmanager
def _atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside `final`; once written it is fsynced and renamed onto `final`.

    Readers see either the old file or the complete new one, never a partial write.
    """
    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(final.parent)  # makes the rename itself durable


def _fsync(path: Path) -> None:
    with path.open("rb+") as file:
        file.flush()
        os.fsync(file.fileno())


def _fsync_directory(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
