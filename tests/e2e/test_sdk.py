"""The SDK the way a notebook uses it, against a real service on both deployments: upload data,
submit, wait with a progress callback, download (sha256-checked), load the model and predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import taas
from tests.e2e.conftest import Deployment
from tests.e2e.test_datasets import SMALL_MLP, unseen_seed, write_npz


@pytest.fixture
def deployment(shared_deployment: Deployment) -> Deployment:
    """These tests only submit and read jobs: they share the deployments of their process."""
    return shared_deployment


def test_a_notebook_submits_waits_downloads_and_predicts(
    deployment: Deployment, tmp_path: Path
) -> None:
    data = np.load(write_npz(tmp_path / "bands.npz", seed=unseen_seed()))
    seen: list[dict[str, Any]] = []
    with taas.Client(deployment.api_url, deployment.create_key("acme")) as client:
        dataset = client.upload_dataset(tmp_path / "bands.npz", name="bands")
        job = client.submit({"dataset": dataset["id"], **SMALL_MLP})
        final = client.wait(job["id"], timeout=120, poll_seconds=0.2, on_update=seen.append)
        assert final["status"] == "succeeded", (final, deployment.logs())
        files = client.download(job["id"], tmp_path / "model")

    assert {path.name for path in files} >= {"model.json", "model.safetensors"}
    statuses = [state["status"] for state in seen]
    assert statuses[-1] == "succeeded", statuses
    assert len(statuses) >= 2, statuses  # the callback saw it before it ended too
    model = taas.load_model(tmp_path / "model")
    # The upload's own name, as its owner gave it; its id beside it.
    assert repr(model).startswith("Model(mlp on bands, ")
    assert model.metadata["dataset"]["id"] == dataset["id"]
    predicted = model.predict(data["x_test"])  # raw uint8 (N, H, W), as uploaded; numpy back
    accuracy = float((predicted == data["y_test"]).mean())
    # The same network on the same test split: what the service measured, to rounding.
    assert abs(accuracy - final["metrics"]["test_accuracy"]) < 1e-6, (accuracy, final)
    assert model.predict_proba(data["x_test"][:5]).shape == (5, 3)
