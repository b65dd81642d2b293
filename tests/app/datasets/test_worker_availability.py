"""Where built-in datasets are is what the workers say they found: a job on one that no worker
of its queue has is refused at submit with the worker's reason, and the Datasets listing says
the same thing."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from taas.worker.datasets.files import report

MISSING = "mnist IDX files not found; looked in /srv/data/MNIST/raw; put ... in one of them"


def say_alive(
    api: TestClient, worker_auth: dict[str, str], name: str, datasets: dict[str, object]
) -> None:
    body = {"queues": ["cpu", "gpu"], "slots": 2, "datasets": datasets}
    response = api.put(f"/internal/v1/workers/{name}", json=body, headers=worker_auth)
    assert response.status_code == 200, response.text


def test_a_dataset_no_worker_has_is_refused_at_submit_with_the_workers_reason(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    say_alive(api, worker_auth, "w1", {"mnist": {"available": False, "reason": MISSING}})
    refused = api.post("/v1/jobs", json={"dataset": "mnist"}, headers=auth)
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["detail"]
    assert problem["loc"] == ["body", "dataset"]
    assert problem["msg"] == f"dataset 'mnist' is not on any worker of the cpu queue: {MISSING}"
    listed = api.get("/v1/datasets/mnist", headers=auth).json()
    assert (listed["available"], listed["reason"]) == (False, MISSING)


def test_one_worker_with_the_files_is_enough(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    say_alive(api, worker_auth, "w1", {"mnist": {"available": False, "reason": MISSING}})
    has_it = {"available": True, "reason": "IDX files in /data/MNIST/raw"}
    say_alive(api, worker_auth, "w2", {"mnist": has_it})
    accepted = api.post("/v1/jobs", json={"dataset": "mnist"}, headers=auth)
    assert accepted.status_code == 201, accepted.text
    listed = api.get("/v1/datasets/mnist", headers=auth).json()
    assert listed["available"] is True
    assert listed["reason"] == "on 1 of 2 workers: IDX files in /data/MNIST/raw"


def test_without_a_word_from_any_worker_the_job_waits_for_one(
    api: TestClient, auth: dict[str, str]
) -> None:
    accepted = api.post("/v1/jobs", json={"dataset": "mnist"}, headers=auth)
    assert accepted.status_code == 201, accepted.text


def test_a_worker_reports_every_built_in_as_its_loader_would_find_it(tmp_path: Path) -> None:
    found = report(tmp_path, allow_download=False)
    assert sorted(found) == ["cifar10", "fashion_mnist", "mnist", "synthetic"]
    assert found["synthetic"]["available"] is True
    assert found["mnist"]["available"] is False
    assert str(tmp_path / "MNIST" / "raw") in str(found["mnist"]["reason"])
