"""A job from POST to a downloaded model, over real HTTP, on both deployments."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from taas.app.spec import JobSpec
from taas.client import Client
from taas.errors import ApiError
from taas.worker.trainer.data import load_dataset
from taas.worker.trainer.evaluation import evaluate
from taas.worker.trainer.export import load_model
from tests.conftest import epoch_progress
from tests.e2e.conftest import Deployment


@pytest.fixture
def deployment(shared_deployment: Deployment) -> Deployment:
    """These tests only submit and read jobs: they share the deployments of their process."""
    return shared_deployment


# The reference MLP of the README, on synthetic data noisy enough that accuracy is well below 100%.
REFERENCE_MLP: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 1200, "test_size": 400, "noise": 1.5},
    "model": {"arch": "mlp", "hidden_sizes": [128], "activation": "relu"},
    "training": {"optimizer": "adam", "lr": 0.001, "epochs": 3, "batch_size": 64},
}
# Long enough to be cancelled while running: many epochs over a larger set.
LONG_JOB: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 20000, "test_size": 500},
    "model": {"arch": "cnn", "channels": [16, 32]},
    "training": {"epochs": 50, "batch_size": 32},
}


def wait_for_status(client: Client, job_id: str, wanted: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job["status"] == wanted:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{job_id} not {wanted} after {timeout}s: {client.job(job_id)}")


def test_reference_job_trains_and_model_reproduces_accuracy(
    deployment: Deployment, tmp_path: Path
) -> None:
    with Client(deployment.api_url, deployment.create_key("acme")) as client:
        job = client.submit(REFERENCE_MLP)
        assert job["status"] == "queued"
        final = client.wait(job["id"], timeout=180, poll_seconds=0.3)
        assert final["status"] == "succeeded", (final, deployment.logs())
        statuses = [event["status"] for event in client.events(job["id"]) if event["status"]]
        assert statuses == ["queued", "running", "succeeded"]

        metrics = client.metrics(job["id"])
        assert [point["epoch"] for point in metrics] == [1, 2, 3]
        assert all(point["train_loss"] is not None for point in metrics)
        assert epoch_progress(final) == {"epoch": 3, "epochs": 3, "fraction": 1.0}
        assert 0.2 < final["metrics"]["test_accuracy"] < 1.0

        listed = {item["name"]: item for item in client.artifacts(job["id"])}
        assert {name for name, item in listed.items() if item["kind"] != "checkpoint"} == {
            "metrics.csv",
            "model.json",
            "model.safetensors",
        }
        # A checkpoint after every epoch but the last, the latest two kept.
        checkpoints = {name for name, item in listed.items() if item["kind"] == "checkpoint"}
        assert checkpoints == {"checkpoint-epoch1.pt", "checkpoint-epoch2.pt"}
        paths = client.download(job["id"], tmp_path / "model")
    assert {path.name for path in paths} == set(listed)
    _assert_model_reproduces(tmp_path / "model", final)


def test_a_job_keeps_and_exports_its_best_epoch(deployment: Deployment, tmp_path: Path) -> None:
    policy = {
        "keep_last": 1,
        "keep_best": {"metric": "val_accuracy", "mode": "max"},
        "export": "best",
    }
    spec = {**REFERENCE_MLP, "training": {**REFERENCE_MLP["training"], "epochs": 4, "lr": 0.02}}
    with Client(deployment.api_url, deployment.create_key("acme")) as client:
        job = client.submit({**spec, "checkpoints": policy})
        final = client.wait(job["id"], timeout=180, poll_seconds=0.3)
        assert final["status"] == "succeeded", (final, deployment.logs())
        metrics = client.metrics(job["id"])
        kept = client.checkpoints(job["id"])
        client.download(job["id"], tmp_path / "model")
    scores = [point["val_accuracy"] for point in metrics]
    best_epoch = max(range(len(scores)), key=lambda index: (scores[index], index)) + 1
    metadata = json.loads((tmp_path / "model" / "model.json").read_text())
    assert metadata["metrics"]["exported_epoch"] == best_epoch, scores
    # Checkpoints follow every epoch but the last: the newest of those, and the best of them.
    saved = range(1, len(scores))
    best_saved = max(saved, key=lambda epoch: (scores[epoch - 1], epoch))
    assert [item["epoch"] for item in kept] == sorted({best_saved, len(scores) - 1})
    _assert_model_reproduces(tmp_path / "model", final)


def _assert_model_reproduces(folder: Path, job: dict[str, Any]) -> None:
    """Rebuild the network from model.json + weights alone and evaluate it on the test split."""
    metadata = json.loads((folder / "model.json").read_text())
    assert metadata["preprocess"].keys() == {"scale", "mean", "std"}
    assert metadata["input_shape"] == [1, 28, 28]
    assert metadata["versions"]["torch"]
    weights = load_file(folder / "model.safetensors")
    model, preprocess, _ = load_model(folder)
    assert set(weights) == set(model.state_dict())
    dataset = load_dataset(JobSpec.model_validate(metadata["spec"]), None)
    loss, accuracy = evaluate(
        model, dataset.test_x, dataset.test_y, preprocess, torch.device("cpu")
    )
    assert accuracy == job["metrics"]["test_accuracy"]
    assert loss == pytest.approx(job["metrics"]["test_loss"], rel=1e-5)


def test_cancel_running_job_stops_within_seconds(deployment: Deployment) -> None:
    with Client(deployment.api_url, deployment.create_key("acme")) as client:
        job = client.submit(LONG_JOB)
        running = wait_for_status(client, job["id"], "running", timeout=60)
        assert running["attempt"] == 1
        asked = time.monotonic()
        assert client.cancel(job["id"])["status"] == "cancelling"
        final = client.wait(job["id"], timeout=30, poll_seconds=0.2)
        took = time.monotonic() - asked
        assert final["status"] == "cancelled", deployment.logs()
        assert took < 10, f"cancel took {took:.1f}s"
        assert final["progress"]["epoch"] < 50
        assert final["artifacts"] == []
        with pytest.raises(ApiError) as refused:
            client.cancel(job["id"])
        assert refused.value.status_code == 409
        assert client.job(job["id"])["status"] == "cancelled"


def test_tenants_are_isolated_over_http(deployment: Deployment) -> None:
    with (
        Client(deployment.api_url, deployment.create_key("acme")) as owner,
        Client(deployment.api_url, deployment.create_key("globex")) as stranger,
        Client(deployment.api_url, "taas_00000000_not-a-real-key") as anonymous,
    ):
        job = owner.submit({**REFERENCE_MLP, "training": {"epochs": 1}})
        for call in (
            lambda: stranger.job(job["id"]),
            lambda: stranger.cancel(job["id"]),
            lambda: stranger.metrics(job["id"]),
            lambda: stranger.artifacts(job["id"]),
            lambda: stranger.delete(job["id"]),
        ):
            with pytest.raises(ApiError) as hidden:
                call()
            assert hidden.value.status_code == 404
        with pytest.raises(ApiError) as unauthenticated:
            anonymous.jobs()
        assert unauthenticated.value.status_code == 401
        assert stranger.jobs()["items"] == []
        assert owner.wait(job["id"], timeout=120)["status"] == "succeeded"
