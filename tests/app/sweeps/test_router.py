"""Sweeps through the API: a refused search space says which parameter, trials are ordinary jobs,
the controller keeps to max_parallel and max_trials, picks the best, and gives up on a broken
base spec. The worker's side is played over the internal routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taas.app.core.config import get_settings
from taas.app.scheduling.reconciler import reconcile
from tests.app.internal.test_router import finish, upload_model, write
from tests.conftest import TINY_SYNTHETIC

INTERNAL = "/internal/v1/jobs"
ROOT = Path(__file__).resolve().parents[3]
GRID: dict[str, Any] = {
    "spec": TINY_SYNTHETIC,
    "parameters": {
        "training.lr": {"values": [0.01, 0.03]},
        "model.activation": {"values": ["relu", "gelu"]},
    },
    "method": "grid",
    "objective": {"metric": "val_accuracy", "goal": "maximize"},
    "max_trials": 4,
    "max_parallel": 2,
}


def submit(api: TestClient, auth: dict[str, str], **changes: Any) -> dict[str, Any]:
    response = api.post("/v1/sweeps", json={**GRID, **changes}, headers=auth)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def sweep(api: TestClient, auth: dict[str, str], sweep_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/sweeps/{sweep_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def run_trial(
    api: TestClient,
    worker_auth: dict[str, str],
    job_id: str,
    val_accuracy: float | None,
    seconds: float = 2.0,
) -> None:
    """Play the worker: claim, one epoch of ``seconds``, then succeed with val_accuracy (None:
    fail)."""
    claimed = api.post(f"{INTERNAL}/{job_id}/claim", json={"worker": "w"}, headers=worker_auth)
    assert claimed.status_code == 200, claimed.text
    if val_accuracy is None:
        done = finish(
            api, worker_auth, job_id, status="failed", error_type="user_error", error_message="nan"
        )
        assert done.status_code == 200, done.text
        return
    point = {"epoch": 1, "val_accuracy": val_accuracy, "val_loss": 1.0, "epoch_seconds": seconds}
    assert write(api, worker_auth, job_id, "metrics", point).status_code == 200
    upload_model(api, worker_auth, job_id)
    done = finish(api, worker_auth, job_id, status="succeeded", test_accuracy=val_accuracy - 0.01)
    assert done.status_code == 200, done.text


def unfinished(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [trial for trial in body["trials"] if trial["status"] in ("queued", "running")]


def test_a_grid_runs_every_combination_at_most_max_parallel_at_once_and_picks_the_best(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    body = submit(api, auth)
    assert (body["status"], body["counts"]) == ("running", {"queued": 2})
    accuracy = {(0.01, "relu"): 0.7, (0.01, "gelu"): 0.8, (0.03, "relu"): 0.9, (0.03, "gelu"): 0.6}
    while body["status"] == "running":
        for trial in unfinished(body):
            params = trial["params"]
            key = (params["training.lr"], params["model.activation"])
            run_trial(api, worker_auth, trial["job_id"], accuracy[key])
        reconcile(get_settings(), expire_leases=False)
        body = sweep(api, auth, body["id"])
        assert len(unfinished(body)) <= 2

    assert body["status"] == "succeeded"
    assert body["counts"] == {"succeeded": 4}
    tried = {(t["params"]["training.lr"], t["params"]["model.activation"]) for t in body["trials"]}
    assert tried == set(accuracy)
    assert body["best"]["params"] == {"training.lr": 0.03, "model.activation": "relu"}
    assert body["best"]["values"] == [0.9]
    # Trials are ordinary jobs, with the spec their params make.
    listed = api.get("/v1/jobs", params={"sweep_id": body["id"]}, headers=auth).json()["items"]
    assert len(listed) == 4
    best_job = next(job for job in listed if job["id"] == body["best"]["job_id"])
    assert (best_job["spec"]["training"]["lr"], best_job["spec"]["model"]["activation"]) == (
        0.03,
        "relu",
    )
    assert best_job["spec"]["training"]["validate_on"] == "holdout"  # never the test split


def test_consecutive_failures_stop_the_sweep_and_cancel_its_other_trials(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    body = submit(
        api,
        auth,
        method="random",
        max_trials=50,
        max_failures=3,
        parameters={"training.lr": {"min": 0.001, "max": 0.1, "scale": "log"}},
    )
    for _ in range(3):
        first = unfinished(body)[0]
        run_trial(api, worker_auth, first["job_id"], None)
        reconcile(get_settings(), expire_leases=False)
        body = sweep(api, auth, body["id"])

    assert body["status"] == "failed"
    assert "3 trials in a row failed" in body["reason"]
    assert "nan" in body["reason"]
    assert len(body["trials"]) < 50
    assert unfinished(body) == []


def test_trials_never_exceed_max_trials_however_often_the_controller_runs(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    body = submit(
        api,
        auth,
        method="random",
        max_trials=3,
        max_parallel=10,
        parameters={"training.lr": {"min": 0.001, "max": 0.1, "scale": "log"}},
    )
    for _ in range(5):
        reconcile(get_settings(), expire_leases=False)
    body = sweep(api, auth, body["id"])
    assert len(body["trials"]) == 3
    assert sorted(t["number"] for t in body["trials"]) == [0, 1, 2]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"parameters": {"training.lrr": {"values": [0.1]}}}, "training.lrr"),
        ({"parameters": {"training.lr": {"values": [0.1, -1]}}}, "training.lr"),
        ({"parameters": {"training.lr": {"min": 0.001, "max": 0.1}}}, "training.lr"),  # grid
        ({"max_trials": 3}, "grid"),
    ],
    ids=["no-such-path", "refused-value", "grid-over-a-range", "grid-over-max-trials"],
)
def test_a_search_space_that_cannot_make_valid_jobs_is_a_422_naming_the_parameter(
    api: TestClient, auth: dict[str, str], changes: dict[str, Any], named: str
) -> None:
    response = api.post("/v1/sweeps", json={**GRID, **changes}, headers=auth)
    assert response.status_code == 422, response.text
    assert named in response.text
    assert api.get("/v1/jobs", headers=auth).json()["items"] == []  # nothing ran


def test_cancel_delete_and_another_tenants_sweep(
    api: TestClient, auth: dict[str, str], make_key: Any
) -> None:
    body = submit(api, auth)
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    assert api.get(f"/v1/sweeps/{body['id']}", headers=other).status_code == 404
    assert api.post(f"/v1/sweeps/{body['id']}/cancel", headers=other).status_code == 404
    assert api.delete(f"/v1/sweeps/{body['id']}", headers=auth).status_code == 409  # running

    cancelled = api.post(f"/v1/sweeps/{body['id']}/cancel", headers=auth).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["counts"] == {"cancelled": 2}
    reconcile(get_settings(), expire_leases=False)  # starts nothing for a cancelled sweep
    assert len(sweep(api, auth, body["id"])["trials"]) == 2
    assert api.delete(f"/v1/sweeps/{body['id']}", headers=auth).status_code == 204
    assert api.get(f"/v1/sweeps/{body['id']}", headers=auth).status_code == 404
    assert api.get("/v1/jobs", headers=auth).json()["items"] == []


def test_the_base_spec_is_checked_first_and_gets_a_model_to_sweep_inside(
    api: TestClient, auth: dict[str, str]
) -> None:
    bad = {**GRID, "spec": {**TINY_SYNTHETIC, "training": {"epochs": 0}}}
    response = api.post("/v1/sweeps", json=bad, headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "spec", "training", "epochs"]

    # No model in the base spec: the default model's arch is named, so its fields can be swept.
    body = submit(api, auth, parameters={"model.activation": {"values": ["relu", "gelu"]}})
    assert body["spec"]["model"] == {"arch": "cnn"}
    assert {trial["params"]["model.activation"] for trial in body["trials"]} == {"relu", "gelu"}
    # On a GPU, the GPU recipe's.
    on_gpu = submit(
        api,
        auth,
        spec={**GRID["spec"], "device": "cuda"},
        parameters={"model.activation": {"values": ["relu", "gelu"]}},
    )
    assert on_gpu["spec"]["model"] == {"arch": "resnet"}


def beat(api: TestClient, worker_auth: dict[str, str], job_id: str) -> dict[str, Any]:
    response = write(api, worker_auth, job_id, "heartbeat", {"epoch": 1, "fraction": 0.3})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize(
    ("early_stopping", "accuracies", "pruned"),
    [
        # ASHA, rung at epoch 1, keeps the top third (at least one) of the trials there so far.
        (
            {"method": "asha", "min_epochs": 1, "reduction_factor": 3},
            [0.9, 0.5, 0.95, 0.92],
            {1, 3},
        ),
        # Median: from the third trial on, one worse than the others' median stops.
        ({"method": "median", "min_epochs": 1, "min_trials": 2}, [0.9, 0.8, 0.5, 0.86], {2}),
    ],
    ids=["asha", "median"],
)
def test_early_stopping_prunes_the_trials_that_fall_behind_within_a_heartbeat(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    early_stopping: dict[str, Any],
    accuracies: list[float],
    pruned: set[int],
) -> None:
    body = submit(
        api,
        auth,
        method="random",
        max_parallel=4,
        early_stopping=early_stopping,
        parameters={"training.lr": {"min": 0.001, "max": 0.1, "scale": "log"}},
    )
    trials = sorted(body["trials"], key=lambda trial: trial["number"])
    assert len(trials) == 4
    told = set()
    for number, (trial, accuracy) in enumerate(zip(trials, accuracies, strict=True)):
        job_id = trial["job_id"]
        api.post(f"{INTERNAL}/{job_id}/claim", json={"worker": "w"}, headers=worker_auth)
        point = {"epoch": 1, "val_accuracy": accuracy, "val_loss": 1.0, "epoch_seconds": 1.0}
        assert write(api, worker_auth, job_id, "metrics", point).status_code == 200
        if beat(api, worker_auth, job_id)["prune"]:
            told.add(number)
    assert told == pruned

    # A pruned trial's worker finishes it: succeeded, stopped early, its model kept.
    first = trials[min(pruned)]["job_id"]
    upload_model(api, worker_auth, first)
    done = finish(api, worker_auth, first, status="succeeded", stop_reason="pruned")
    assert done.status_code == 200, done.text
    trial = next(t for t in sweep(api, auth, body["id"])["trials"] if t["job_id"] == first)
    assert (trial["status"], trial["stop_reason"]) == ("succeeded", "pruned")
    events = api.get(f"/v1/jobs/{first}/events", headers=auth).json()["items"]
    assert any("pruned" in event["message"] for event in events)


def test_early_stopping_needs_a_validation_objective(api: TestClient, auth: dict[str, str]) -> None:
    response = api.post(
        "/v1/sweeps",
        json={
            **GRID,
            "objective": {"metric": "train_seconds", "goal": "minimize"},
            "early_stopping": {"method": "asha"},
        },
        headers=auth,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "early_stopping"]


def run_three_trials(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str], **changes: Any
) -> dict[str, Any]:
    """Trials 0, 1, 2 end with (val_accuracy, train_seconds) (0.9, 5), (0.8, 2), (0.7, 6)."""
    results = {0: (0.9, 5.0), 1: (0.8, 2.0), 2: (0.7, 6.0)}
    body = submit(api, auth, method="random", max_trials=3, max_parallel=3, **changes)
    for trial in body["trials"]:
        accuracy, seconds = results[trial["number"]]
        run_trial(api, worker_auth, trial["job_id"], accuracy, seconds)
    return sweep(api, auth, body["id"])


def test_two_objectives_give_the_pareto_front(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    objectives = [
        {"metric": "val_accuracy", "goal": "maximize"},
        {"metric": "train_seconds", "goal": "minimize"},
    ]
    body = run_three_trials(api, auth, worker_auth, objective=objectives)
    assert body["status"] == "succeeded"
    assert body["best"] is None
    assert sorted(trial["number"] for trial in body["pareto"]) == [0, 1]  # 2 is dominated by 0
    assert next(t for t in body["pareto"] if t["number"] == 1)["values"] == [0.8, 2.0]


def test_the_fastest_trial_that_meets_the_constraint_is_best(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    body = run_three_trials(
        api,
        auth,
        worker_auth,
        objective={"metric": "train_seconds", "goal": "minimize"},
        constraint={"val_accuracy": {"min": 0.85}},
    )
    # Trial 1 is faster, but below 85%.
    assert (body["best"]["number"], body["best"]["values"]) == (0, [5.0])


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("sweep_*.json")), ids=lambda path: path.name
)
def test_the_sweep_examples_are_accepted(
    api: TestClient, auth: dict[str, str], example: Path
) -> None:
    response = api.post("/v1/sweeps", json=json.loads(example.read_text()), headers=auth)
    assert response.status_code == 201, response.text
    assert len(response.json()["trials"]) == 1  # max_parallel 1: one trial at a time


def test_a_search_space_reaching_past_a_configured_limit_is_refused_naming_the_parameter(
    api: TestClient, auth: dict[str, str]
) -> None:
    """Not accepted, then failed at its first trial: the space's ends are checked at submit."""
    parameters = {"training.epochs": {"min": 1, "max": 500, "type": "int"}}
    response = api.post(
        "/v1/sweeps", json={**GRID, "method": "random", "parameters": parameters}, headers=auth
    )
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", "parameters", "training.epochs"]
    assert item["msg"] == (
        "parameter 'training.epochs': value 500 makes an invalid spec: "
        "training.epochs: training.epochs=500: at most 200"
    )
    assert api.get("/v1/sweeps", headers=auth).json()["items"] == []


def test_a_misspelled_sweep_field_gets_a_suggestion(api: TestClient, auth: dict[str, str]) -> None:
    body = {key: value for key, value in GRID.items() if key != "parameters"}
    response = api.post("/v1/sweeps", json={**body, "paramters": GRID["parameters"]}, headers=auth)
    assert response.status_code == 422
    messages = {tuple(item["loc"]): item["msg"] for item in response.json()["detail"]}
    assert messages["body", "paramters"].endswith("; did you mean `parameters`?")
