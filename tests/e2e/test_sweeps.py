"""Sweeps between real processes on PostgreSQL and Redis: two `taas api` (each advancing sweeps
in its reconciler), a worker, and API processes killed with SIGKILL mid-sweep, which must end
with exactly ``max_trials`` trials, numbered once each, all run; and a trial stopped early by
ASHA, whose worker hears of it at its next heartbeat."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Deployment, start_production
from tests.e2e.processes import free_port, wait_until_healthy

# Half a minute or more each: started first in a parallel session.
pytestmark = pytest.mark.slow

# A second or two each on two cores: the kills land while trials run.
SWEEP: dict[str, Any] = {
    "spec": {
        "dataset": "synthetic",
        "dataset_options": {"train_size": 3000, "test_size": 200, "shape": [1, 12, 12]},
        "model": {"arch": "mlp", "hidden_sizes": [64]},
        "training": {"epochs": 2, "batch_size": 32},
    },
    "parameters": {
        "training.lr": {"min": 0.001, "max": 0.05, "scale": "log"},
        "model.activation": {"values": ["relu", "gelu"]},
    },
    "method": "tpe",
    "objective": {"metric": "val_accuracy", "goal": "maximize"},
    "max_trials": 8,
    "max_parallel": 2,
    "seed": 7,
}
FAST_RECONCILER = {"TAAS_RECONCILE_SECONDS": "0.5", "TAAS_REQUEUE_AFTER_SECONDS": "2"}


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str) -> Iterator[Deployment]:
    started = start_production(tmp_path, postgres_url, **FAST_RECONCILER)
    yield started
    started.stop()


def test_a_sweep_ends_with_exactly_max_trials_through_api_kills(deployment: Deployment) -> None:
    port_b = free_port()
    api_b = deployment.start_api("api-b", port=port_b)
    url_b = f"http://127.0.0.1:{port_b}"
    wait_until_healthy(url_b, [api_b])
    auth = {"Authorization": f"Bearer {deployment.create_key('acme')}"}
    response = httpx.post(f"{url_b}/v1/sweeps", json=SWEEP, headers=auth, timeout=30)
    assert response.status_code == 201, response.text
    sweep_id = response.json()["id"]

    # Kill each API process once while trials run, and start it again.
    api_a = deployment.processes[0]
    for killed, name, port in ((api_a, "api-a2", deployment.port), (api_b, "api-b2", port_b)):
        wait_for_trials(url_b if killed is api_a else deployment.api_url, auth, sweep_id, 2)
        killed.kill()
        time.sleep(0.5)
        restarted = deployment.start_api(name, port=port)
        wait_until_healthy(f"http://127.0.0.1:{port}", [restarted])
    body = wait_for_end(url_b, auth, sweep_id, deployment)

    assert body["status"] == "succeeded", (body["reason"], deployment.logs())
    numbers = sorted(trial["number"] for trial in body["trials"])
    assert numbers == list(range(8))  # exactly max_trials, none twice
    assert body["counts"] == {"succeeded": 8}
    listed = httpx.get(
        f"{url_b}/v1/jobs", params={"sweep_id": sweep_id, "limit": 100}, headers=auth
    ).json()["items"]
    assert len(listed) == 8
    assert body["best"] is not None
    assert body["best"]["values"][0] == max(t["values"][0] for t in body["trials"])


# Epochs of about 4 s here (more on a loaded machine), so that a stop within a heartbeat (2 s) is
# told apart from a stop at the end of the next epoch; a learning rate of 1e-6 learns nothing in
# one epoch.
PRUNED_SWEEP: dict[str, Any] = {
    "spec": {
        "dataset": "synthetic",
        "dataset_options": {"train_size": 40000, "test_size": 200, "shape": [1, 16, 16]},
        "model": {"arch": "mlp", "hidden_sizes": [128]},
        "training": {"epochs": 2, "batch_size": 8},
    },
    "parameters": {"training.lr": {"values": [0.003, 1e-6]}},
    "method": "grid",
    "objective": {"metric": "val_accuracy", "goal": "maximize"},
    "max_trials": 2,
    "max_parallel": 1,
    "early_stopping": {"method": "asha", "min_epochs": 1, "reduction_factor": 2},
}
HEARTBEAT_SECONDS = 2.0  # the server's default, which this deployment keeps


def test_a_pruned_trial_stops_within_a_heartbeat_and_keeps_its_model(
    deployment: Deployment,
) -> None:
    auth = {"Authorization": f"Bearer {deployment.create_key('acme')}"}
    url = deployment.api_url
    response = httpx.post(f"{url}/v1/sweeps", json=PRUNED_SWEEP, headers=auth, timeout=30)
    assert response.status_code == 201, response.text
    body = wait_for_end(url, auth, response.json()["id"], deployment)
    assert body["status"] == "succeeded", body["reason"]

    kept, pruned = sorted(body["trials"], key=lambda trial: trial["number"])
    assert (kept["stop_reason"], kept["epochs_trained"]) == ("completed", 2)
    assert (pruned["status"], pruned["stop_reason"]) == ("succeeded", "pruned")
    assert pruned["epochs_trained"] == 1
    assert pruned["test_accuracy"] is not None  # evaluated on the test split after the stop
    job = httpx.get(f"{url}/v1/jobs/{pruned['job_id']}", headers=auth, timeout=30).json()
    assert "model.safetensors" in job["artifacts"]

    events = httpx.get(f"{url}/v1/jobs/{pruned['job_id']}/events", headers=auth).json()["items"]
    decision = next(event for event in events if "pruned by ASHA at epoch 1" in event["message"])
    decided = datetime.fromisoformat(decision["created_at"])
    stopped = datetime.fromisoformat(job["finished_at"])
    epoch_seconds = job["metrics"]["latest"]["epoch_seconds"]
    # Told at the next heartbeat, stopped within one batch, then its test pass and model files.
    delay = (stopped - decided).total_seconds()
    print(
        f"pruned at epoch 1: ended {delay:.2f} s after the decision (epoch {epoch_seconds:.1f} s)"
    )
    # Told only at the end of its next epoch, it would have trained two (epochs_trained above).
    assert delay < HEARTBEAT_SECONDS + 2.0


def wait_for_trials(url: str, auth: dict[str, str], sweep_id: str, ended: int) -> None:
    """Until ``ended`` more trials have ended than when called."""

    def ended_now() -> int:
        body = httpx.get(f"{url}/v1/sweeps/{sweep_id}", headers=auth, timeout=30).json()
        return sum(count for status, count in body["counts"].items() if status == "succeeded")

    target = ended_now() + ended
    deadline = time.monotonic() + 120
    while ended_now() < target:
        assert time.monotonic() < deadline, "trials did not end"
        time.sleep(0.3)


def wait_for_end(url: str, auth: dict[str, str], sweep_id: str, deployment: Deployment) -> Any:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/v1/sweeps/{sweep_id}", headers=auth, timeout=30).json()
        if body["status"] != "running":
            return body
        time.sleep(0.5)
    raise AssertionError(f"sweep still running\n{deployment.logs()}")
