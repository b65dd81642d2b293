"""Jobs survive what production does to processes: kill -9, SIGTERM, a broker or API restart.

Real `taas api` / `taas worker` / `taas serve` processes on PostgreSQL (or SQLite) and Redis, with
leases short enough that a lost worker is noticed in seconds instead of a minute. Each job is
small but runs several epochs, so that a kill lands mid-job, after a checkpoint.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taas.client import Client
from tests.conftest import epoch_progress
from tests.e2e.conftest import Deployment, start_embedded, start_production
from tests.e2e.processes import (
    children_running,
    wait_until_healthy,
)
from tests.private_servers import PrivateRedis

# Half a minute or more each: started first in a parallel session.
pytestmark = pytest.mark.slow

# A lost worker is noticed 4 s after its last heartbeat (instead of 60), a queued job nobody
# claimed is sent to the broker again after 2 s (instead of 60).
SHORT_LEASES = {
    "TAAS_LEASE_SECONDS": "4",
    "TAAS_RECONCILE_SECONDS": "0.5",
    "TAAS_REQUEUE_AFTER_SECONDS": "2",
    "TAAS_HEARTBEAT_SECONDS": "0.5",
}
EPOCHS = 4
# About a second per epoch on a 2-core CPU: a kill after epoch 2 lands mid-job, after a checkpoint.
RESUMABLE_JOB: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 20000, "test_size": 200, "noise": 1.5},
    "model": {"arch": "mlp", "hidden_sizes": [256]},
    "training": {"epochs": EPOCHS, "batch_size": 32},
}
# Far longer than any time limit below, on the fastest CPU.
LONG_JOB: dict[str, Any] = {**RESUMABLE_JOB, "training": {"epochs": 100, "batch_size": 32}}
TINY_JOB: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 256, "test_size": 64, "shape": [1, 12, 12]},
    "training": {"epochs": 2, "batch_size": 32},
}
RESUMED = re.compile(r"resumed from the checkpoint after epoch (\d+)")


def stop_all(deployments: list[Deployment], request: pytest.FixtureRequest) -> None:
    """Stop what a test started; print its logs if the test failed."""
    for deployment in deployments:
        deployment.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for deployment in deployments:
            print(deployment.logs())


@pytest.fixture
def production(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> Iterator[Callable[..., Deployment]]:
    """Start `taas api` + `taas worker` on PostgreSQL and Redis with short leases. Stopped
    before the database is dropped (this fixture depends on it, so it ends first)."""
    started: list[Deployment] = []

    def start(**options: Any) -> Deployment:
        deployment = start_production(tmp_path, postgres_url, **{**SHORT_LEASES, **options})
        started.append(deployment)
        return deployment

    yield start
    stop_all(started, request)


@pytest.fixture
def embedded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    deployment = start_embedded(tmp_path, **SHORT_LEASES)
    yield deployment
    stop_all([deployment], request)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of the test's own, which it may kill: it keeps nothing on disk, so it comes back
    empty, as a broker that lost its messages."""
    broker = PrivateRedis(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def client_for(deployment: Deployment) -> Client:
    return Client(deployment.api_url, deployment.create_key("acme"))


def wait_until(
    what: str, check: Callable[[], bool], deployment: Deployment, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not {what} after {timeout:.0f} s\n{deployment.logs()}")


def wait_for_epoch(client: Client, job_id: str, epoch: int, deployment: Deployment) -> int:
    """Wait until the job reported ``epoch``; returns the epoch it reported last."""
    seen = 0

    def reached() -> bool:
        nonlocal seen
        job = client.job(job_id)
        assert job["status"] in ("queued", "running"), job
        seen = int(job["progress"]["epoch"])
        return seen >= epoch

    wait_until(f"at epoch {epoch}", reached, deployment)
    return seen


def wait_for_attempt(client: Client, job_id: str, attempt: int, deployment: Deployment) -> None:
    def claimed() -> bool:
        job = client.job(job_id)
        return bool(job["status"] == "running" and job["attempt"] == attempt)

    wait_until(f"running attempt {attempt}", claimed, deployment)


def messages(client: Client, job_id: str) -> list[str]:
    return [event["message"] for event in client.events(job_id)]


def assert_succeeded_once(client: Client, job: dict[str, Any], deployment: Deployment) -> None:
    """Succeeded, with each epoch's metrics exactly once and exactly one model."""
    assert job["status"] == "succeeded", (job, deployment.logs())
    epochs = [point["epoch"] for point in client.metrics(job["id"])]
    assert epochs == list(range(1, EPOCHS + 1))
    names = [item["name"] for item in client.artifacts(job["id"])]
    assert names.count("model.safetensors") == 1
    assert epoch_progress(job) == {"epoch": EPOCHS, "epochs": EPOCHS, "fraction": 1.0}


def resumed_after(client: Client, job_id: str) -> list[int]:
    """The epochs the job's attempts resumed after, in order."""
    return [int(found[1]) for text in messages(client, job_id) if (found := RESUMED.search(text))]


def test_worker_killed_mid_job_resumes_on_a_new_worker(
    production: Callable[..., Deployment],
) -> None:
    deployment = production()
    with client_for(deployment) as client:
        job_id = client.submit(RESUMABLE_JOB)["id"]
        reported = wait_for_epoch(client, job_id, 2, deployment)
        deployment.processes[1].kill()  # the worker: no release, no last heartbeat
        deployment.start_worker("worker-2")
        final = client.wait(job_id, timeout=120, poll_seconds=0.3)

        assert_succeeded_once(client, final, deployment)
        assert final["attempt"] == 2
        assert any("attempt 1 lost its worker" in text for text in messages(client, job_id))
        # From the latest checkpoint: the one after the last reported epoch, or the one before
        # if the kill came between the report and the upload.
        [after] = resumed_after(client, job_id)
        assert after >= reported - 1 >= 1


def test_serve_restarts_its_killed_worker_and_the_job_resumes(embedded: Deployment) -> None:
    serve = embedded.processes[0]
    assert serve.popen is not None
    serve_pid = serve.popen.pid
    with client_for(embedded) as client:
        job_id = client.submit(RESUMABLE_JOB)["id"]
        reported = wait_for_epoch(client, job_id, 2, embedded)
        [worker] = children_running(serve_pid, "worker")
        os.kill(worker, signal.SIGKILL)

        def restarted() -> bool:
            workers = children_running(serve_pid, "worker")
            return bool(workers) and worker not in workers

        wait_until("a new worker process", restarted, embedded, timeout=30)
        final = client.wait(job_id, timeout=120, poll_seconds=0.3)

        assert_succeeded_once(client, final, embedded)
        assert final["attempt"] == 2
        assert any("attempt 1 lost its worker" in text for text in messages(client, job_id))
        [after] = resumed_after(client, job_id)
        assert after >= reported - 1 >= 1
    assert "the worker exited (-9); restarting it" in serve.log()


class Presence:
    """A worker's presence, said to the API directly (as a worker does every few seconds)."""

    def __init__(self, deployment: Deployment, name: str) -> None:
        self.url = f"{deployment.api_url}/internal/v1/workers/{name}"
        self.headers = {"Authorization": f"Bearer {deployment.env['TAAS_WORKER_TOKEN']}"}

    def put(self) -> None:
        body = {"queues": ["cpu"], "slots": 1}
        response = httpx.put(self.url, json=body, headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text

    def delete(self) -> None:
        assert httpx.delete(self.url, headers=self.headers, timeout=30).status_code == 204


def say_alive(deployment: Deployment, name: str) -> Presence:
    presence = Presence(deployment, name)
    presence.put()
    return presence


def test_jobs_queued_across_a_redis_restart_all_run(
    private_redis: PrivateRedis, production: Callable[..., Deployment]
) -> None:
    # Requeue after 1 s (doubling): jobs the broker lost are sent again soon after it is back.
    deployment = production(broker_url=private_redis.url, workers=0, TAAS_REQUEUE_AFTER_SECONDS="1")
    with client_for(deployment) as client:
        job_ids = [client.submit(TINY_JOB)["id"] for _ in range(5)]  # waiting: no worker yet
        private_redis.kill()

        ready = httpx.get(f"{deployment.api_url}/readyz", timeout=30)
        assert ready.status_code == 503
        body = ready.json()
        assert (body["status"], body["database"], body["broker"]) == ("unavailable", "ok", "down")
        during = client.http.post("/v1/jobs", json=TINY_JOB)
        assert during.status_code == 201, during.text
        assert during.json()["status"] == "queued"
        job_ids.append(during.json()["id"])
        # A worker says it has a free slot: the fairest job is sent, and the broker refuses it.
        slot = say_alive(deployment, "a-worker-whose-broker-is-down")
        assert "broker unreachable" in " ".join(messages(client, job_ids[0]))
        slot.delete()

        private_redis.start()
        wait_until(
            "ready again",
            lambda: httpx.get(f"{deployment.api_url}/readyz", timeout=30).status_code == 200,
            deployment,
            timeout=30,
        )
        deployment.start_worker()
        finals = [client.wait(job_id, timeout=60, poll_seconds=0.3) for job_id in job_ids]
    assert [job["status"] for job in finals] == ["succeeded"] * 6, deployment.logs()
    assert [job["attempt"] for job in finals] == [1] * 6


def test_api_killed_and_restarted_while_a_job_runs(production: Callable[..., Deployment]) -> None:
    # A lease longer than the API's outage: the worker rides it out with its retries, and the
    # reconciler of the restarted API must not take the job from it.
    deployment = production(TAAS_LEASE_SECONDS="20")
    with client_for(deployment) as client:
        job_id = client.submit(RESUMABLE_JOB)["id"]
        wait_for_epoch(client, job_id, 2, deployment)
        deployment.processes[0].kill()  # the API, mid-request or not
        time.sleep(1)
        api = deployment.start_api("api-2")
        wait_until_healthy(deployment.api_url, [api])
        final = client.wait(job_id, timeout=120, poll_seconds=0.3)

        assert_succeeded_once(client, final, deployment)
        assert final["attempt"] == 1
        assert resumed_after(client, job_id) == []


def test_a_job_whose_worker_always_dies_fails_after_max_attempts(
    production: Callable[..., Deployment],
) -> None:
    deployment = production(TAAS_MAX_ATTEMPTS="2")
    worker = deployment.processes[1]
    with client_for(deployment) as client:
        job_id = client.submit(RESUMABLE_JOB)["id"]
        for attempt in (1, 2):
            wait_for_attempt(client, job_id, attempt, deployment)
            worker.kill()
            worker = deployment.start_worker(f"worker-{attempt + 1}")
        final = client.wait(job_id, timeout=60, poll_seconds=0.3)

        assert final["status"] == "failed", (final, deployment.logs())
        assert final["error"]["type"] == "infra"
        assert "last of 2 attempts" in final["error"]["message"]
        assert final["attempt"] == 2
        lost = [event for event in client.events(job_id) if "lost its worker" in event["message"]]
        assert [event["attempt"] for event in lost] == [1, 2]
        assert [event["status"] for event in lost] == ["queued", "failed"]

        # No retry storm: the live worker runs another job, and never claims this one again.
        history = client.events(job_id)
        other = client.wait(client.submit(TINY_JOB)["id"], timeout=60, poll_seconds=0.3)
        assert other["status"] == "succeeded", deployment.logs()
        time.sleep(2)  # a few more reconcile periods
        assert client.job(job_id)["attempt"] == 2
        assert client.job(job_id)["status"] == "failed"
        assert client.events(job_id) == history


def test_sigterm_gives_the_job_back_and_another_worker_resumes_it(
    production: Callable[..., Deployment],
) -> None:
    deployment = production()
    with client_for(deployment) as client:
        job_id = client.submit(RESUMABLE_JOB)["id"]
        reported = wait_for_epoch(client, job_id, 2, deployment)
        asked = time.monotonic()
        exit_code = deployment.processes[1].stop(signal.SIGTERM, timeout=20)
        took = time.monotonic() - asked

        assert exit_code == 0, deployment.logs()
        assert took < 10, f"the worker took {took:.1f} s to stop"
        given_back = client.job(job_id)
        assert given_back["status"] == "queued"
        assert given_back["attempt"] == 1
        assert any(
            "attempt 1 gave the job back: the worker is shutting down" in text
            for text in messages(client, job_id)
        )

        deployment.start_worker("worker-2")
        final = client.wait(job_id, timeout=120, poll_seconds=0.3)
        assert_succeeded_once(client, final, deployment)
        assert final["attempt"] == 2
        # The worker checkpointed where it stopped, within a batch: the new attempt goes on
        # from that batch of the epoch after the last reported one (or a later one).
        [after] = resumed_after(client, job_id)
        assert after >= reported
        assert any(
            re.search(rf"after epoch {after}, \d+ batches into epoch {after + 1}", text)
            for text in messages(client, job_id)
        ), messages(client, job_id)


def test_a_job_past_its_time_limit_is_stopped_by_its_worker_and_fails_as_timeout(
    production: Callable[..., Deployment],
) -> None:
    # No training.max_seconds and no grace: each attempt may run 3 s, and this job needs more.
    deployment = production(TAAS_MAX_JOB_SECONDS="3", TAAS_TIME_LIMIT_GRACE_SECONDS="0")
    worker = deployment.processes[1]
    with client_for(deployment) as client:
        job_id = client.submit(LONG_JOB)["id"]
        final = client.wait(job_id, timeout=60, poll_seconds=0.3)

        assert final["status"] == "failed", (final, deployment.logs())
        assert final["error"]["type"] == "timeout"
        # The worker stopped it within a batch and said so (the reconciler's message differs).
        assert final["error"]["message"].startswith("stopped at its time limit of 3 s"), final
        assert final["attempt"] == 1
        assert final["progress"]["epoch"] < LONG_JOB["training"]["epochs"]
        assert worker.popen is not None
        assert worker.popen.poll() is None  # the worker is still up, ready for the next job
        time.sleep(2)  # a few reconcile periods: a timeout is final, never run again
        assert client.job(job_id)["attempt"] == 1


def test_a_multi_gpu_worker_runs_one_job_per_gpu(production: Callable[..., Deployment]) -> None:
    # Two pool processes, one per listed GPU (here they find no GPU and train on the CPU).
    deployment = production(workers=0)
    deployment.start_worker("worker", "--gpus", "0,1")
    with client_for(deployment) as client:
        jobs = [client.submit(RESUMABLE_JOB)["id"] for _ in range(2)]
        finals = [client.wait(job_id, timeout=120, poll_seconds=0.3) for job_id in jobs]

        assert [final["status"] for final in finals] == ["succeeded"] * 2, deployment.logs()
        started = [
            message
            for job_id in jobs
            for message in messages(client, job_id)
            if message.startswith("attempt 1 started on")
        ]
        devices = sorted(message.split(";")[0].rsplit("/", 1)[-1] for message in started)
        assert devices == ["gpu0", "gpu1"], started


def test_ctrl_c_under_serve_gives_the_job_back_and_the_next_start_goes_on_mid_epoch(
    embedded: Deployment,
) -> None:
    serve = embedded.processes[0]
    assert serve.popen is not None
    with client_for(embedded) as client:
        job_id = client.submit(RESUMABLE_JOB)["id"]
        reported = wait_for_epoch(client, job_id, 2, embedded)

        serve.popen.send_signal(signal.SIGINT)
        assert serve.popen.wait(timeout=60) == 0, embedded.logs()

    serve.start()  # same home, same port
    wait_until_healthy(embedded.api_url, [serve])
    with client_for(embedded) as client:
        final = client.wait(job_id, timeout=120, poll_seconds=0.3)

        assert_succeeded_once(client, final, embedded)
        assert final["attempt"] == 2  # the worker that was stopping claimed nothing more
        texts = messages(client, job_id)
        assert any("attempt 1 gave the job back" in text for text in texts), texts
        [after] = resumed_after(client, job_id)
        assert after >= reported
        assert any(f"batches into epoch {after + 1}" in text for text in texts), texts
