"""The API says did-you-mean itself, so curl and the Python client get what the CLI shows."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("spec", "loc", "hint"),
    [
        ({"dataset": "fashion-mnist"}, ["body", "dataset"], "did you mean `fashion_mnist`?"),
        (
            {"dataset": "mnist", "model": {"arch": "cnn", "activaton": "relu"}},
            ["body", "model", "cnn", "activaton"],
            "did you mean `activation`?",
        ),
        (
            {"dataset": "mnist", "training": {"optimizer": "adamw2"}},
            ["body", "training", "optimizer"],
            "did you mean `adamw`?",
        ),
    ],
)
def test_a_near_miss_in_a_job_spec_gets_a_suggestion(
    api: TestClient, auth: dict[str, str], spec: dict[str, Any], loc: list[str], hint: str
) -> None:
    response = api.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == loc
    assert problem["msg"].endswith(f"; {hint}"), problem


def test_a_sweeps_spec_gets_them_too(api: TestClient, auth: dict[str, str]) -> None:
    sweep = {
        "spec": {"dataset": "synthetic", "trainig": {"epochs": 1}},
        "parameters": {"training.lr": {"values": [0.01, 0.03]}},
        "method": "grid",
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "max_trials": 2,
    }
    response = api.post("/v1/sweeps", json=sweep, headers=auth)
    assert response.status_code == 422
    messages = [problem["msg"] for problem in response.json()["detail"]]
    assert any(message.endswith("; did you mean `training`?") for message in messages), messages
