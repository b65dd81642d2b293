"""The live stream between real processes: two `taas api` on PostgreSQL, a worker reporting to
one and a client streaming from the other, and the latency of a report to a connected client."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Deployment, start_production
from tests.e2e.processes import free_port, wait_until_healthy

# Half a minute or more each: started first in a parallel session.
pytestmark = pytest.mark.slow

# 600 steps an epoch: half a second or more on a fast CPU, and the worker reports every tenth
# of a second (HEARTBEAT_SECONDS), so progress arrives several times within each epoch.
LIVE_JOB: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 19200, "test_size": 200, "noise": 1.5},
    "model": {"arch": "mlp", "hidden_sizes": [128]},
    "training": {"epochs": 3, "batch_size": 32, "evals_per_epoch": 4},
}
HEARTBEAT_SECONDS = "0.1"


@pytest.fixture
def two_apis(
    tmp_path: Path, postgres_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[Deployment, str]]:
    """A production deployment (API A, one worker reporting to A) and a second API, B."""
    workers = getattr(request, "param", 1)
    deployment = start_production(
        tmp_path, postgres_url, workers=workers, TAAS_HEARTBEAT_SECONDS=HEARTBEAT_SECONDS
    )
    port_b = free_port()
    deployment.start_api("api-b", port=port_b)
    url_b = f"http://127.0.0.1:{port_b}"
    wait_until_healthy(url_b, deployment.processes)
    yield deployment, url_b
    deployment.stop()


def events(
    url: str, auth: dict[str, str], **headers: str
) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """(arrival time, event type, data) for each Server-Sent Event, until the server closes."""
    with httpx.stream("GET", url, headers={**auth, **headers}, timeout=60) as response:
        assert response.status_code == 200, response.read()
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
            elif not line and fields:
                yield time.monotonic(), fields["event"], json.loads(fields["data"])
                fields = {}


def test_a_real_job_streams_live_through_another_api_process(
    two_apis: tuple[Deployment, str],
) -> None:
    deployment, url_b = two_apis
    auth = {"Authorization": f"Bearer {deployment.create_key('acme')}"}
    job = httpx.post(f"{url_b}/v1/jobs", json=LIVE_JOB, headers=auth).json()

    received = list(events(f"{url_b}/v1/jobs/{job['id']}/stream", auth))

    kinds = [kind for _, kind, _ in received]
    assert kinds[-1] == "end"
    assert received[-1][2]["status"] == "succeeded", deployment.logs()
    progress = [data for _, kind, data in received if kind == "progress"]
    # The bar moves within epochs (a report every tenth of a second; at least a few get through
    # however busy the machine is), and never back (reports reach the API in the order taken).
    within_epochs = [p for p in progress if 0 < p["batches_done"] < p["batches_per_epoch"]]
    assert len(within_epochs) >= 3, progress
    fractions = [p["fraction"] for p in progress]
    assert fractions == sorted(fractions)
    assert all(p["samples_per_second"] and p["eta_seconds"] is not None for p in progress[1:])
    steps = [
        data for _, kind, data in received if kind == "metric" and data["granularity"] == "step"
    ]
    assert len([s for s in steps if s["kind"] == "train"]) >= 50
    assert len([s for s in steps if s["kind"] == "eval"]) == 3 * 4  # every evaluation
    # The same series is on the public route, through the other API process.
    series = httpx.get(
        f"{deployment.api_url}/v1/jobs/{job['id']}/metrics",
        params={"granularity": "step"},
        headers=auth,
    ).json()["items"]
    assert len(series) == len(steps)


@pytest.mark.parametrize("two_apis", [0], indirect=True)
def test_a_report_to_one_api_reaches_a_client_of_the_other_within_a_second(
    two_apis: tuple[Deployment, str],
) -> None:
    deployment, url_b = two_apis
    auth = {"Authorization": f"Bearer {deployment.create_key('acme')}"}
    worker = {"Authorization": f"Bearer {deployment.env['TAAS_WORKER_TOKEN']}"}
    job_id = httpx.post(f"{url_b}/v1/jobs", json=LIVE_JOB, headers=auth).json()["id"]
    internal = f"{deployment.api_url}/internal/v1/jobs/{job_id}"
    assert httpx.post(f"{internal}/claim", json={"worker": "w"}, headers=worker).status_code == 200
    arrivals: dict[int, float] = {}

    def listen() -> None:
        for at, kind, data in events(f"{url_b}/v1/jobs/{job_id}/stream", auth):
            if kind == "progress":
                arrivals[data["batches_done"]] = at

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.0)  # connected and subscribed
    sent: dict[int, float] = {}
    for batch in range(1, 31):
        sent[batch] = time.monotonic()
        beat = {
            "epoch": 0,
            "fraction": batch / 200,
            "batches_done": batch,
            "batches_per_epoch": 100,
        }
        response = httpx.post(f"{internal}/attempts/1/heartbeat", json=beat, headers=worker)
        assert response.status_code == 200
        time.sleep(0.1)
    finish = {"status": "failed", "error_type": "user_error", "error_message": "enough"}
    httpx.post(f"{internal}/attempts/1/finish", json=finish, headers=worker)
    listener.join(timeout=30)

    assert sorted(arrivals) == list(range(1, 31))
    latencies = sorted(arrivals[batch] - sent[batch] for batch in sent)
    median, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(
        f"stream latency across API processes on PostgreSQL: median {median * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms ({len(latencies)} reports)"
    )
    assert median < 1.0
