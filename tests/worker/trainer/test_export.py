from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from app.spec import normalized
from tests.worker.trainer.fakes import RecordingContext, tiny_spec
from worker.trainer import load_model
from worker.trainer.data import Dataset, load_dataset
from worker.trainer.export import write_model_files
from worker.trainer.loop import TrainResult, evaluate, train

MODELS = [
    {"arch": "mlp", "hidden_sizes": [32, 16], "batch_norm": True, "dropout": 0.1},
    {"arch": "cnn", "channels": [8, 16], "hidden_size": 32, "batch_norm": True},
    {"arch": "resnet", "widths": [8, 8, 16], "dropout": 0.1},
]


def trained(model: dict[str, Any], **training: Any) -> tuple[TrainResult, Dataset, Any]:
    spec = tiny_spec(model, **training)
    dataset = load_dataset(spec, None)
    return train(spec, dataset, RecordingContext()), dataset, spec


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


def test_model_json_describes_how_to_rebuild_and_use_the_model(tmp_path: Path) -> None:
    result, dataset, spec = trained(MODELS[1])

    paths = write_model_files(result, spec, dataset, tmp_path / "artifacts")

    assert [path.name for path in paths] == ["model.safetensors", "model.json"]
    document = json.loads(paths[1].read_text())
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
    }
    assert document["parameter_count"] == result.parameter_count
    assert set(document["versions"]) == {"taas", "torch", "python", "numpy", "safetensors"}
    assert document["versions"]["torch"] == str(torch.__version__)
    assert datetime.fromisoformat(document["created_at"]).utcoffset() is not None
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["model.json", "model.safetensors"]


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


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
