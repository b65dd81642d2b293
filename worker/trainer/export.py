"""Model artifacts: weights as safetensors, the exports a spec asks for (ONNX, a torch.export
program), the metric history as CSV, and a model.json that says how to rebuild and use them.

Nothing here unpickles: weights load with safetensors, metadata with json.
"""

from __future__ import annotations

import csv
import hashlib
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

from taas.app.spec import JobSpec, normalized
from taas.worker.trainer.data import Dataset, Preprocess
from taas.worker.trainer.loop import TrainResult
from taas.worker.trainer.networks import build_network, for_inference
from taas.worker.trainer.run import MetricPoint

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
ONNX_FILE = "model.onnx"
# The "torchscript" export: TorchScript (torch.jit) is deprecated, so it is a torch.export
# program, which torch.export.load() reads without this package.
PT2_FILE = "model.pt2"
METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "epoch_seconds",
    "samples_per_second",
)
# The API's artifact kind of each file write_model_files writes.
ARTIFACT_KINDS = {
    WEIGHTS_FILE: "model",
    METADATA_FILE: "metadata",
    ONNX_FILE: "export",
    PT2_FILE: "export",
    METRICS_FILE: "log",
}
# The opset torch's ONNX translation library is written for (no version conversion needed);
# onnxruntime runs it from 1.14 on.
ONNX_OPSET = 18
# Exports trace the network on a batch of this size; the batch axis stays dynamic. Not 1:
# torch.export would treat a size of 1 as a constant.
EXAMPLE_BATCH = 2
DATASET_TENSORS = ("train_x", "train_y", "test_x", "test_y")


class ExportFailed(Exception):
    """A requested export could not be written; the job fails with this message."""

    def __init__(self, format: str, reason: str) -> None:
        super().__init__(f"export {format!r} failed: {reason}")
        self.format, self.reason = format, reason


def write_model_files(
    result: TrainResult, spec: JobSpec, dataset: Dataset, out_dir: Path
) -> list[Path]:
    """Write model.safetensors, the exports ``spec.exports`` asks for, metrics.csv and, last,
    model.json (a folder with a model.json is complete), each atomically. Returns their paths in
    that order.

    Raises ExportFailed when a requested export cannot be written: its file is not left behind,
    not even in part, and no model.json is written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model = result.model.eval()  # already fp32 on CPU: the loop's _finish put it there
    shape = dataset.info.shape  # (C, H, W)
    written = [_write_weights(model, out_dir / WEIGHTS_FILE)]
    # The exports compute what the service measured, test-time flips included.
    predicting = for_inference(model, spec.training.test_time_flip)
    if "onnx" in spec.exports:
        written.append(_write_onnx(predicting, shape, out_dir / ONNX_FILE))
    if "torchscript" in spec.exports:
        written.append(_write_pt2(predicting, shape, out_dir / PT2_FILE))
    written.append(_write_metrics(result.history, out_dir / METRICS_FILE))
    metadata = model_metadata(result, spec, dataset, [path.name for path in written])
    metadata_path = out_dir / METADATA_FILE
    with _atomic_path(metadata_path) as temporary:
        temporary.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return [*written, metadata_path]


def artifact_kind(path: Path) -> str:
    """The API's artifact kind of a file write_model_files wrote: model, metadata, export, log."""
    kind = ARTIFACT_KINDS.get(path.name)
    if kind is None:
        raise ValueError(f"{path.name!r} is not a file write_model_files writes")
    return kind


def _write_weights(model: nn.Module, path: Path) -> Path:
    tensors = {
        name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()
    }
    with _atomic_path(path) as temporary:
        safetensors.torch.save_file(tensors, str(temporary), metadata={"format": "pt"})
    return path


def _write_onnx(model: nn.Module, shape: tuple[int, int, int], path: Path) -> Path:
    """model.onnx: input "input" (batch, C, H, W) float32, already preprocessed; output "logits"
    (batch, classes).

    The dynamo exporter (torch.export, then onnxscript): the default since torch 2.9; the
    TorchScript-based one is deprecated.
    """
    with _failing_as("onnx"), _atomic_path(path) as temporary:
        import onnx  # here, not at the top: loading a model needs none of the export libraries

        program = torch.onnx.export(
            model,
            (_example_input(shape),),
            dynamo=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: "batch"},),  # a name, not a size: any batch runs
            opset_version=ONNX_OPSET,
            verbose=False,
        )
        if program is None:
            raise RuntimeError("torch.onnx.export returned no program")
        # One self-contained file: torch moves weights out only past 1.5 GB, and max_parameters
        # (50M by default, 200 MB) keeps ours far below that.
        program.save(temporary, external_data=False)
        onnx.checker.check_model(str(temporary), full_check=True)
    return path


def _write_pt2(model: nn.Module, shape: tuple[int, int, int], path: Path) -> Path:
    """model.pt2: a torch.export program, (batch, C, H, W) float32 preprocessed -> logits."""
    with _failing_as("torchscript"), _atomic_path(path) as temporary:
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(model, (_example_input(shape),), dynamic_shapes=({0: batch},))
        # A file object: given a path, torch.export.save insists on a name ending in .pt2.
        with temporary.open("wb") as file:
            torch.export.save(program, file)
    return path


def _example_input(shape: tuple[int, int, int]) -> torch.Tensor:
    return torch.zeros(EXAMPLE_BATCH, *shape, dtype=torch.float32)  # (B, C, H, W)


@contextmanager
def _failing_as(format: str) -> Iterator[None]:
    """Any error inside becomes ExportFailed naming the format: a job never loses an export
    silently."""
    try:
        yield
    except Exception as error:
        raise ExportFailed(format, f"{type(error).__name__}: {error}") from error


def _write_metrics(points: list[MetricPoint], path: Path) -> Path:
    """metrics.csv: a METRICS_COLUMNS header, then one row per epoch; empty cells for None."""
    with _atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(METRICS_COLUMNS)
        for point in points:
            values = point.to_json()
            # Floats as repr(): they read back as exactly the reported numbers.
            writer.writerow(["" if values[key] is None else values[key] for key in METRICS_COLUMNS])
    return path


def model_metadata(
    result: TrainResult, spec: JobSpec, dataset: Dataset, files: list[str]
) -> dict[str, Any]:
    """The model.json document: everything needed to rebuild the network, feed it inputs and
    reproduce the run. ``files`` names the other files written beside it."""
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
            # Whose weights these are: the last epoch's, or the best validation's.
            "exported_epoch": result.exported_epoch,
        },
        "parameter_count": result.parameter_count,
        "seed": spec.training.seed,
        "dataset": {
            "name": info.name,
            "id": spec.dataset,  # a built-in's name, or an upload's id
            "train_size": info.train_size,
            "test_size": info.test_size,
            "sha256": dataset_sha256(dataset),
            "class_names": list(info.class_names),
        },
        "exports": list(files),
        "versions": library_versions(with_onnx=ONNX_FILE in files),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def dataset_sha256(dataset: Dataset) -> str:
    """sha256 over train_x, train_y, test_x and test_y in that order: each one's name, dtype and
    shape, then its bytes (row-major, native byte order). Equal data gives equal digests."""
    digest = hashlib.sha256()
    for name in DATASET_TENSORS:
        tensor: torch.Tensor = getattr(dataset, name).detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {list(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().reshape(-1).view(np.uint8).data)  # a view: no copy
    return digest.hexdigest()


def library_versions(with_onnx: bool = False) -> dict[str, str]:
    """The versions that wrote the files; ``with_onnx``, those of the ONNX exporter too."""
    versions = {
        "taas": _installed_version("taas"),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }
    if with_onnx:
        versions["onnx"] = _installed_version("onnx")
        versions["onnxscript"] = _installed_version("onnxscript")
    return versions


def _installed_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"  # e.g. taas from a source checkout that was never installed


def load_model(folder: Path) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    """The model saved in `folder`: (module on CPU in eval mode, preprocess, model.json dict).
    The module predicts as the service evaluated: the network, averaged with mirror images when
    its spec has ``training.test_time_flip``."""
    metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    if metadata.get("format_version") != FORMAT_VERSION:
        found = metadata.get("format_version")
        raise ValueError(f"{folder / METADATA_FILE} has format_version={found!r}, expected 1")
    spec = JobSpec.model_validate(metadata["spec"])
    channels, height, width = metadata["input_shape"]
    model = build_network(spec.model, (channels, height, width), metadata["num_classes"])
    weights = safetensors.torch.load_file(str(folder / WEIGHTS_FILE), device="cpu")
    model.load_state_dict(weights, strict=True)  # missing or extra tensors are an error
    predicting = for_inference(model, spec.training.test_time_flip)
    return predicting.eval(), Preprocess.from_json(metadata["preprocess"]), metadata


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
