from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
import safetensors.torch
import torch

from taas.app.spec import JobSpec, normalized
from taas.worker.trainer import load_model
from taas.worker.trainer.data import Dataset, load_dataset
from taas.worker.trainer.evaluation import evaluate
from taas.worker.trainer.export import (
    EXAMPLE_BATCH,
    METRICS_COLUMNS,
    ExportFailed,
    artifact_kind,
    dataset_sha256,
    model_metadata,
    write_model_files,
)
from taas.worker.trainer.loop import TrainResult, train
from taas.worker.trainer.networks import for_inference
from taas.worker.trainer.run import MetricPoint
from tests.worker.trainer.fakes import RecordingContext, tiny_spec

MODELS = [
    {"arch": "mlp", "hidden_sizes": [32, 16], "batch_norm": True, "dropout": 0.1},
    {"arch": "cnn", "channels": [8, 16], "hidden_size": 32, "batch_norm": True},
    {"arch": "resnet", "widths": [8, 8, 16], "dropout": 0.1},
]
# What the exports must handle beyond MODELS: avg pools, no batch norm, and activations that ONNX
# opset 18 has no operator for (gelu, silu) or that take a parameter. Leaky_relu, tanh and sigmoid
# map to one operator each; a test of each would cost a second.
MORE_MODELS = [
    {"arch": "cnn", "channels": [8, 8], "pooling": "avg", "activation": "gelu", "dropout": 0.2},
    {"arch": "mlp", "hidden_sizes": [16, 16], "activation": "silu"},
    {"arch": "resnet", "widths": [8, 16], "activation": "elu"},
]
# fp32 on both sides; ONNX Runtime may fuse and reorder the float sums.
TOLERANCE = 1e-4


def with_exports(spec: JobSpec, *formats: str) -> JobSpec:
    return JobSpec.model_validate({**spec.model_dump(), "exports": ["safetensors", *formats]})


def trained(
    model: dict[str, Any], exports: tuple[str, ...] = (), **training: Any
) -> tuple[TrainResult, Dataset, JobSpec]:
    spec = with_exports(tiny_spec(model, **training), *exports)
    dataset = load_dataset(spec, None)
    return train(spec, dataset, RecordingContext()), dataset, spec


def torch_logits(
    result: TrainResult, dataset: Dataset, spec: JobSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """(preprocessed test split (N, C, H, W) float32, the trained model's logits (N, classes)),
    with the test-time flips the spec asks for (the resnet recipe does)."""
    x = result.preprocess.apply(dataset.test_x)
    with torch.no_grad():
        return x, for_inference(result.model, spec.training.test_time_flip)(x)


def max_difference(got: np.ndarray[Any, Any] | torch.Tensor, expected: torch.Tensor) -> float:
    return float(np.abs(np.asarray(got) - expected.numpy()).max())


@pytest.mark.parametrize("model", MODELS)
def test_saved_model_reproduces_the_test_metrics_exactly(
    model: dict[str, Any], tmp_path: Path
) -> None:
    result, dataset, spec = trained(model)
    write_model_files(result, spec, dataset, tmp_path)

    loaded, preprocess, _ = load_model(tmp_path)
    loss, accuracy = evaluate(
        loaded, dataset.test_x, dataset.test_y, preprocess, torch.device("cpu")
    )

    assert accuracy == result.test_accuracy
    assert loss == result.test_loss
    assert preprocess == result.preprocess
    assert not loaded.training


def test_a_model_trained_with_test_time_flips_predicts_as_the_service_measured(
    tmp_path: Path,
) -> None:
    """The weights file holds the network alone; the loaded module and both exports average
    each image with its mirror image, and reproduce the job's test metrics."""
    cnn = {"arch": "cnn", "channels": [8, 16], "hidden_size": 32}
    result, dataset, spec = trained(
        cnn, exports=("onnx", "torchscript"), test_time_flip=True, augment={"flip": True}
    )
    write_model_files(result, spec, dataset, tmp_path)
    loaded, preprocess, metadata = load_model(tmp_path)
    x = preprocess.apply(dataset.test_x)
    with torch.no_grad():
        network_alone = result.model(x)
        expected = (network_alone + result.model(x.flip(3))) / 2

    loss, accuracy = evaluate(
        loaded, dataset.test_x, dataset.test_y, preprocess, torch.device("cpu")
    )
    assert (accuracy, loss) == (result.test_accuracy, result.test_loss)
    assert metadata["spec"]["training"]["test_time_flip"] is True
    assert set(safetensors.torch.load_file(tmp_path / "model.safetensors")) == set(
        result.model.state_dict()
    )
    session = onnxruntime.InferenceSession(
        str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (onnx_logits,) = session.run(["logits"], {"input": x.numpy()})
    program = torch.export.load(tmp_path / "model.pt2").module()
    with torch.no_grad():
        assert max_difference(loaded(x), expected) <= TOLERANCE
        assert max_difference(program(x), expected) <= TOLERANCE
    assert max_difference(onnx_logits, expected) <= TOLERANCE
    assert max_difference(network_alone, expected) > TOLERANCE  # the flips change the logits


@pytest.mark.parametrize("model", MODELS)
def test_onnx_and_pt2_give_the_pytorch_logits_at_any_batch_size(
    model: dict[str, Any], tmp_path: Path
) -> None:
    result, dataset, spec = trained(model, exports=("onnx", "torchscript"))
    paths = write_model_files(result, spec, dataset, tmp_path)
    x, expected = torch_logits(result, dataset, spec)  # 128 samples, and 1: not EXAMPLE_BATCH
    assert EXAMPLE_BATCH not in (len(x), 1)

    session = onnxruntime.InferenceSession(
        str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    program = torch.export.load(tmp_path / "model.pt2").module()

    assert [path.name for path in paths] == [
        "model.safetensors",
        "model.onnx",
        "model.pt2",
        "metrics.csv",
        "model.json",
    ]
    assert [node.name for node in session.get_inputs()] == ["input"]
    assert [node.name for node in session.get_outputs()] == ["logits"]
    for count in (len(x), 1):
        (onnx_logits,) = session.run(["logits"], {"input": x[:count].numpy()})
        assert onnx_logits.shape == (count, 4)
        assert max_difference(onnx_logits, expected[:count]) <= TOLERANCE
        with torch.no_grad():
            assert max_difference(program(x[:count]), expected[:count]) <= TOLERANCE


@pytest.mark.parametrize("model", MORE_MODELS, ids=lambda model: model["activation"])
def test_onnx_export_handles_every_layer_the_specs_build(
    model: dict[str, Any], tmp_path: Path
) -> None:
    result, dataset, spec = trained(model, exports=("onnx",), epochs=1)
    write_model_files(result, spec, dataset, tmp_path)
    x, expected = torch_logits(result, dataset, spec)

    session = onnxruntime.InferenceSession(
        str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]
    )

    (onnx_logits,) = session.run(["logits"], {"input": x.numpy()})
    assert max_difference(onnx_logits, expected) <= TOLERANCE


# Runs in a fresh interpreter where importing this project fails: the file must stand alone.
LOAD_PT2_ALONE = """
import sys
sys.modules["app"] = sys.modules["worker"] = sys.modules["tests"] = None
import torch
folder = sys.argv[1]
program = torch.export.load(folder + "/model.pt2").module()
x, expected = torch.load(folder + "/check.pt", weights_only=True)
with torch.no_grad():
    print(float((program(x) - expected).abs().max()))
"""


def test_pt2_loads_without_this_project(tmp_path: Path) -> None:
    result, dataset, spec = trained(MODELS[2], exports=("torchscript",), epochs=1)  # resnet
    write_model_files(result, spec, dataset, tmp_path)
    torch.save(torch_logits(result, dataset, spec), tmp_path / "check.pt")

    run = subprocess.run(
        [sys.executable, "-c", LOAD_PT2_ALONE, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert float(run.stdout) <= TOLERANCE


@pytest.mark.parametrize(
    ("target", "export_format"),
    [
        ("torch.onnx.export", "onnx"),
        # Fails once model.onnx was written to its temporary file: that file must go too.
        ("onnx.checker.check_model", "onnx"),
        ("torch.export.export", "torchscript"),
    ],
)
def test_a_failed_export_raises_and_leaves_no_partial_file(
    target: str, export_format: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, dataset, spec = trained(MODELS[0], exports=(export_format,), epochs=1)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the exporter broke")

    monkeypatch.setattr(target, broken)

    with pytest.raises(ExportFailed, match="the exporter broke") as failure:
        write_model_files(result, spec, dataset, tmp_path)

    assert failure.value.format == export_format
    assert repr(export_format) in str(failure.value)
    # No model.json: a folder without one is known to be incomplete.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.safetensors"]


def read_metrics(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def as_row(point: MetricPoint) -> dict[str, str]:
    """What metrics.csv must hold for `point`: the exact value, or nothing for None."""
    return {key: "" if value is None else repr(value) for key, value in point.to_json().items()}


def test_metrics_csv_holds_every_reported_epoch(tmp_path: Path) -> None:
    spec = tiny_spec(epochs=3)
    dataset = load_dataset(spec, None)
    context = RecordingContext()
    result = train(spec, dataset, context)
    assert result.history == context.points
    # One epoch without validation, as when evaluation was skipped: empty cells.
    result.history[0] = dataclasses.replace(result.history[0], val_loss=None, val_accuracy=None)

    write_model_files(result, spec, dataset, tmp_path)

    header, rows = read_metrics(tmp_path / "metrics.csv")
    assert header == list(METRICS_COLUMNS)
    assert header == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "epoch_seconds",
        "samples_per_second",
    ]
    assert rows == [as_row(point) for point in result.history]
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert (rows[0]["val_loss"], rows[0]["val_accuracy"]) == ("", "")
    assert float(rows[2]["val_accuracy"]) == result.test_accuracy


def test_metrics_csv_after_a_resume_still_has_every_epoch(tmp_path: Path) -> None:
    spec = tiny_spec(epochs=3)
    dataset = load_dataset(spec, None)
    first = RecordingContext()
    train(spec, dataset, first)
    resumed = RecordingContext()
    resumed.resume_from = first.checkpoints[0]  # saved after epoch 1, through weights_only

    result = train(spec, dataset, resumed)
    write_model_files(result, spec, dataset, tmp_path)

    assert [point.epoch for point in resumed.points] == [2, 3]  # epoch 1 was not trained again
    assert result.history == [first.points[0], *resumed.points]
    _, rows = read_metrics(tmp_path / "metrics.csv")
    assert rows == [as_row(point) for point in [first.points[0], *resumed.points]]


def test_model_json_describes_how_to_rebuild_and_use_the_model(tmp_path: Path) -> None:
    result, dataset, spec = trained(MODELS[1])

    paths = write_model_files(result, spec, dataset, tmp_path / "artifacts")

    assert [path.name for path in paths] == ["model.safetensors", "metrics.csv", "model.json"]
    document = json.loads(paths[-1].read_text())
    assert document["format_version"] == 1
    assert document["spec"] == normalized(spec)
    assert document["arch"] == "cnn"
    assert document["input_shape"] == [1, 12, 12]
    assert document["num_classes"] == 4
    assert document["class_names"] == ["class_0", "class_1", "class_2", "class_3"]
    assert document["preprocess"] == result.preprocess.to_json()
    assert document["metrics"] == {
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "epochs_completed": 2,
        "stop_reason": "completed",
        "exported_epoch": 2.0,  # the last epoch: the default export
    }
    assert document["parameter_count"] == result.parameter_count
    assert set(document["versions"]) == {"taas", "torch", "python", "numpy", "safetensors"}
    assert document["versions"]["torch"] == str(torch.__version__)
    assert datetime.fromisoformat(document["created_at"]).utcoffset() is not None
    assert document["exports"] == ["model.safetensors", "metrics.csv"]
    assert sorted(p.name for p in paths[0].parent.iterdir()) == [
        "metrics.csv",
        "model.json",
        "model.safetensors",
    ]


def test_model_json_says_how_to_reproduce_the_run(tmp_path: Path) -> None:
    result, dataset, spec = trained(MODELS[0], exports=("onnx", "torchscript"), epochs=1, seed=7)

    write_model_files(result, spec, dataset, tmp_path)

    document = json.loads((tmp_path / "model.json").read_text())
    assert document["seed"] == 7
    assert document["dataset"] == {
        "name": "synthetic",
        "id": "synthetic",  # a built-in's id is its name
        "train_size": 256,
        "test_size": 128,
        "sha256": dataset_sha256(dataset),
        "class_names": ["class_0", "class_1", "class_2", "class_3"],
    }
    assert document["exports"] == ["model.safetensors", "model.onnx", "model.pt2", "metrics.csv"]
    assert document["versions"]["onnx"] not in ("", "unknown")
    assert document["versions"]["onnxscript"] not in ("", "unknown")


def test_dataset_sha256_follows_the_data_only() -> None:
    spec = tiny_spec()
    first, again = load_dataset(spec, None), load_dataset(spec, None)
    other = load_dataset(tiny_spec(options={"seed": 4}), None)
    one_pixel = dataclasses.replace(first, test_x=first.test_x.clone())
    one_pixel.test_x[0, 0, 0, 0] ^= 1
    # The same bytes in another shape are other data.
    reshaped = dataclasses.replace(first, train_x=first.train_x.reshape(-1, 1, 6, 24))

    digest = dataset_sha256(first)

    assert len(digest) == 64
    assert dataset_sha256(again) == digest
    assert dataset_sha256(other) != digest
    assert dataset_sha256(one_pixel) != digest
    assert dataset_sha256(reshaped) != digest


def test_artifact_kind_names_the_api_kind_of_every_file(tmp_path: Path) -> None:
    names = ["model.safetensors", "model.onnx", "model.pt2", "metrics.csv", "model.json"]

    assert {name: artifact_kind(tmp_path / name) for name in names} == {
        "model.safetensors": "model",
        "model.onnx": "export",
        "model.pt2": "export",
        "metrics.csv": "log",
        "model.json": "metadata",
    }
    with pytest.raises(ValueError, match=r"'notes\.txt'"):
        artifact_kind(tmp_path / "notes.txt")


def test_weights_file_holds_the_state_dict(tmp_path: Path) -> None:
    result, dataset, spec = trained(MODELS[0])
    write_model_files(result, spec, dataset, tmp_path)

    weights = safetensors.torch.load_file(str(tmp_path / "model.safetensors"))

    state = result.model.state_dict()
    assert set(weights) == set(state)
    assert all(torch.equal(weights[name], state[name]) for name in state)


def test_writing_again_replaces_the_files(tmp_path: Path) -> None:
    first, dataset, spec = trained(MODELS[0], epochs=1)
    second, _, second_spec = trained(MODELS[0], epochs=2)
    write_model_files(first, spec, dataset, tmp_path)

    write_model_files(second, second_spec, dataset, tmp_path)

    _, _, document = load_model(tmp_path)
    assert document["metrics"]["epochs_completed"] == 2
    assert len(read_metrics(tmp_path / "metrics.csv")[1]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.csv",
        "model.json",
        "model.safetensors",
    ]


def test_load_refuses_weights_that_do_not_match_the_network(tmp_path: Path) -> None:
    result, dataset, spec = trained(MODELS[0], epochs=1)
    write_model_files(result, spec, dataset, tmp_path)
    weights = safetensors.torch.load_file(str(tmp_path / "model.safetensors"))
    weights["extra.weight"] = torch.zeros(3)
    safetensors.torch.save_file(weights, str(tmp_path / "model.safetensors"))

    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_model(tmp_path)


def test_load_refuses_an_unknown_format_version(tmp_path: Path) -> None:
    result, dataset, spec = trained(MODELS[0], epochs=1)
    write_model_files(result, spec, dataset, tmp_path)
    document = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**document, "format_version": 2}))

    with pytest.raises(ValueError, match="format_version=2"):
        load_model(tmp_path)


def test_the_sdk_model_reads_in_one_line_and_takes_read_only_arrays(tmp_path: Path) -> None:
    import warnings

    import taas

    result, dataset, spec = trained({"arch": "mlp", "hidden_sizes": [16]})
    write_model_files(result, spec, dataset, tmp_path)
    model = taas.load_model(tmp_path)
    shown = repr(model)
    assert shown.startswith("Model(mlp on synthetic, input (1, 12, 12), 4 classes")
    assert "test_accuracy=" in shown
    assert "\n" not in shown
    assert len(shown) < 120
    pixels = dataset.test_x.numpy().copy()
    pixels.setflags(write=False)  # as np.load(..., mmap_mode="r") gives them
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch's non-writable warning would fail here
        predicted = model.predict(pixels)
    assert predicted.shape == (len(pixels),)


def test_the_sdk_model_takes_samples_in_every_layout_an_upload_may_hold_them(
    tmp_path: Path,
) -> None:
    """One sample or a batch; channels first, channels last, no channel axis, or flat rows; a
    numpy array (numpy back), a list (numpy back) or a tensor (a tensor back)."""
    import taas

    result, dataset, spec = trained({"arch": "mlp", "hidden_sizes": [16]})
    write_model_files(result, spec, dataset, tmp_path)
    model = taas.load_model(tmp_path)
    pixels = dataset.test_x.numpy()  # (N, 1, 12, 12) uint8
    expected = model.predict(pixels)
    assert isinstance(expected, np.ndarray)
    assert expected.shape == (len(pixels),)
    layouts = {
        "channels last": pixels.transpose(0, 2, 3, 1),
        "no channel axis": pixels[:, 0],
        "flat rows": pixels.reshape(len(pixels), -1),
        "floats 0-255": pixels.astype(np.float32),
    }
    for name, batch in layouts.items():
        assert (model.predict(batch) == expected).all(), name
    for sample in (pixels[3], pixels[3, 0], pixels[3].reshape(-1), pixels[3].transpose(1, 2, 0)):
        assert model.predict(sample).tolist() == [expected[3]]
    assert model.predict(pixels[:2].tolist()).tolist() == expected[:2].tolist()
    as_tensor = model.predict_proba(torch.as_tensor(pixels[:2]))
    assert isinstance(as_tensor, torch.Tensor)
    assert tuple(as_tensor.shape) == (2, 4)


def test_the_sdk_model_refuses_inputs_it_would_predict_wrong_naming_what_it_takes(
    tmp_path: Path,
) -> None:
    import taas

    result, dataset, spec = trained({"arch": "mlp", "hidden_sizes": [16]})
    write_model_files(result, spec, dataset, tmp_path)
    model = taas.load_model(tmp_path)
    pixels = dataset.test_x.numpy()
    with pytest.raises(ValueError, match=r"floats between 0 and 1.*multiply by 255"):
        model.predict(pixels.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"inputs are torch\.bool"):
        model.predict(pixels > 100)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "inputs of shape (5, 10, 10): the model takes samples shaped (1, 12, 12), "
            "(12, 12, 1), (12, 12) or 144 values in a row, one sample or a batch of them"
        ),
    ):
        model.predict(np.zeros((5, 10, 10), dtype=np.uint8))


def test_the_sdk_loads_a_model_from_its_folder_or_its_model_json_and_says_what_is_missing(
    tmp_path: Path,
) -> None:
    import taas

    result, dataset, spec = trained({"arch": "mlp", "hidden_sizes": [16]})
    write_model_files(result, spec, dataset, tmp_path / "model")
    assert taas.load_model(tmp_path / "model" / "model.json").num_classes == 4
    (tmp_path / "cancelled").mkdir()  # what downloading a job without a model leaves
    with pytest.raises(FileNotFoundError, match="a failed or cancelled job has no model"):
        taas.load_model(tmp_path / "cancelled")


def test_a_job_that_exports_its_best_validation_exports_those_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Validation scores scripted 0.5, 0.9, 0.6 over three epochs: the exported weights are
    the second epoch's (as its checkpoint holds them), and model.json says so."""
    from taas.worker.trainer import loop

    scripted = iter([0.5, 0.9, 0.6])
    real_evaluate, real_fast = loop.evaluate, loop.fast_evaluate

    def with_scripted_accuracy(real: Any) -> Any:
        def evaluate(*args: Any, **kwargs: Any) -> tuple[float, float]:
            loss, accuracy = real(*args, **kwargs)
            return loss, next(scripted, accuracy)  # the final test evaluation is the real one

        return evaluate

    monkeypatch.setattr(loop, "evaluate", with_scripted_accuracy(real_evaluate))
    monkeypatch.setattr(loop, "fast_evaluate", with_scripted_accuracy(real_fast))
    spec = tiny_spec(acceleration="off", epochs=3)
    spec = JobSpec.model_validate({**spec.model_dump(), "checkpoints": {"export": "best"}})
    dataset = load_dataset(spec, None)
    context = RecordingContext()
    result = train(spec, dataset, context)

    assert result.exported_epoch == 2.0
    second = next(state for state in context.checkpoints if state["epoch"] == 2)
    exported = result.model.state_dict()
    for key, value in second["model"].items():
        assert torch.equal(exported[key].cpu(), value.cpu()), key
    assert "exporting the weights of epoch 2, the best validation (0.9000)" in context.messages
    metadata = model_metadata(result, spec, dataset, [])
    assert metadata["metrics"]["exported_epoch"] == 2.0
    assert [point.val_accuracy for point in context.points] == [0.5, 0.9, 0.6]


def test_a_resumed_job_still_exports_the_best_validation_of_before_its_resume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The best so far travels in the checkpoints: an attempt that resumes after epoch 2 (whose
    validation was the best) still exports epoch 2's weights when epoch 3 scores lower."""
    from taas.worker.trainer import loop

    scripted: list[float] = []

    def with_scripted_accuracy(real: Any) -> Any:
        def evaluate(*args: Any, **kwargs: Any) -> tuple[float, float]:
            loss, accuracy = real(*args, **kwargs)
            return loss, scripted.pop(0) if scripted else accuracy

        return evaluate

    monkeypatch.setattr(loop, "evaluate", with_scripted_accuracy(loop.evaluate))
    monkeypatch.setattr(loop, "fast_evaluate", with_scripted_accuracy(loop.fast_evaluate))
    spec = tiny_spec(acceleration="off", epochs=3)
    spec = JobSpec.model_validate({**spec.model_dump(), "checkpoints": {"export": "best"}})
    dataset = load_dataset(spec, None)
    first = RecordingContext()
    scripted[:] = [0.5, 0.9, 0.6]
    train(spec, dataset, first)
    after_second = next(state for state in first.checkpoints if state["epoch"] == 2)
    assert after_second["best"]["epoch"] == 2.0

    resumed = RecordingContext()
    resumed.resume_from = after_second
    scripted[:] = [0.6]  # epoch 3's validation, below epoch 2's
    result = train(spec, dataset, resumed)
    assert result.exported_epoch == 2.0
    for key, value in after_second["best"]["weights"].items():
        assert torch.equal(result.model.state_dict()[key].cpu(), value.cpu()), key
