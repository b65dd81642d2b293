"""Checkpoints travel through the API: each save is uploaded as a `checkpoint` artifact, older
ones are pruned, and a new attempt resumes from the latest, verified against its sha256."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from taas.app.artifacts.models import Artifact
from taas.app.core.config import get_settings
from taas.app.core.db import session_scope
from taas.worker.context import JobContext
from taas.worker.reporter import ApiReporter
from tests.conftest import TINY_SYNTHETIC, WORKER_TOKEN


@pytest.fixture
def reporter(api: TestClient) -> Iterator[ApiReporter]:
    """The worker's real reporter, talking to the in-process API."""
    reporter = ApiReporter("http://testserver", WORKER_TOKEN, attempts=1)
    reporter.client.close()
    reporter.client = TestClient(
        api.app,
        base_url="http://testserver/internal/v1/jobs",
        headers={"Authorization": f"Bearer {WORKER_TOKEN}"},
    )
    yield reporter
    reporter.close()


def running_job(api: TestClient, auth: dict[str, str], reporter: ApiReporter) -> str:
    job_id = str(api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"])
    assert reporter.claim(job_id, "test-worker") is not None
    return job_id


def state(epoch: int) -> dict[str, object]:
    return {"epoch": epoch, "model": {"weight": torch.full((3,), float(epoch))}}


def checkpoint_names(job_id: str) -> list[str]:
    with session_scope() as session:
        rows = session.query(Artifact).filter_by(job_id=job_id, kind="checkpoint").all()
        return sorted(row.name for row in rows)


def test_saves_are_uploaded_pruned_and_the_latest_is_resumed(
    api: TestClient, auth: dict[str, str], reporter: ApiReporter, tmp_path: Path
) -> None:
    job_id = running_job(api, auth, reporter)
    context = JobContext(reporter, job_id, 1, 5, tmp_path / "scratch")
    assert context.load_checkpoint() is None  # nothing saved yet

    for epoch in (1, 2, 3):
        context.save_checkpoint(state(epoch))

    assert checkpoint_names(job_id) == ["checkpoint-epoch2.pt", "checkpoint-epoch3.pt"]
    artifact_dir = get_settings().resolved_artifact_dir / job_id
    assert len(list(artifact_dir.iterdir())) == 2  # the pruned file is gone too
    fresh = JobContext(reporter, job_id, 1, 5, tmp_path / "elsewhere")  # another worker
    resumed = fresh.load_checkpoint()
    assert resumed is not None
    assert resumed["epoch"] == 3
    assert torch.equal(resumed["model"]["weight"], torch.full((3,), 3.0))


def test_a_corrupted_checkpoint_is_not_loaded(
    api: TestClient, auth: dict[str, str], reporter: ApiReporter, tmp_path: Path
) -> None:
    job_id = running_job(api, auth, reporter)
    context = JobContext(reporter, job_id, 1, 5, tmp_path / "scratch")
    context.save_checkpoint(state(1))
    [stored] = (get_settings().resolved_artifact_dir / job_id).iterdir()
    stored.write_bytes(stored.read_bytes()[:-10] + b"corrupted!")

    assert context.load_checkpoint() is None
    events = api.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["items"]
    assert any("unusable" in event["message"] for event in events)


def test_checkpoints_must_be_named_by_their_epoch(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"]
    api.post(f"/internal/v1/jobs/{job_id}/claim", json={"worker": "w"}, headers=worker_auth)

    response = api.put(
        f"/internal/v1/jobs/{job_id}/attempts/1/artifacts/state.pt",
        params={"kind": "checkpoint"},
        headers={**worker_auth, "X-Content-SHA256": "0" * 64},
        content=b"x",
    )

    assert response.status_code == 422
    assert "checkpoint-epoch" in response.text


def test_a_job_deleted_while_queued_is_nothing_to_run_for_the_worker_that_gets_its_message(
    api: TestClient, auth: dict[str, str], reporter: ApiReporter
) -> None:
    """No traceback in the worker's log: the job is simply gone (404 at the claim)."""
    import pickle

    from taas.worker.reporter import ApiRefused

    job_id = str(api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"])
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=auth).status_code == 202
    assert api.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert reporter.claim(job_id, "test-worker") is None
    # Any other refusal still raises, and reaches Celery's result whole.
    refused = pickle.loads(pickle.dumps(ApiRefused(400, "bad request")))  # noqa: S301
    assert (refused.status_code, str(refused)) == (400, "API refused (400): bad request")


def test_the_kept_checkpoints_are_listed_with_their_epochs_metrics_and_files(
    api: TestClient,
    auth: dict[str, str],
    reporter: ApiReporter,
    tmp_path: Path,
    make_key: Callable[[str], str],
) -> None:
    job_id = running_job(api, auth, reporter)
    context = JobContext(reporter, job_id, 1, 5, tmp_path / "scratch")
    # As the trainer does: an epoch's metrics, then its checkpoint; progress says its batches.
    reporter.heartbeat(
        job_id, 1, {"epoch": 0, "fraction": 0.0, "batches_done": 0, "batches_per_epoch": 8}
    )
    for epoch in (1, 2, 3):
        point = {"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 10}
        reporter.post_metrics(job_id, 1, point)
        context.save_checkpoint(state(epoch))

    listed = api.get(f"/v1/jobs/{job_id}/checkpoints", headers=auth)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [item["epoch"] for item in items] == [2, 3]  # the kept ones, oldest first
    assert [item["step"] for item in items] == [16, 24]
    assert [item["metrics"]["val_accuracy"] for item in items] == [0.7, 0.8]
    artifacts = {item["name"]: item for item in api.get(
        f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"]}  # fmt: skip
    for item in items:
        assert item["sha256"] == artifacts[item["name"]]["sha256"]
        assert item["size_bytes"] == artifacts[item["name"]]["size_bytes"]
        file = api.get(f"/v1/jobs/{job_id}/artifacts/{item['name']}", headers=auth)
        assert file.headers["X-Content-SHA256"] == item["sha256"]
    stranger = {"Authorization": f"Bearer {make_key('globex')}"}
    assert api.get(f"/v1/jobs/{job_id}/checkpoints", headers=stranger).status_code == 404


def test_a_job_keeps_its_best_checkpoint_beside_the_newest_when_its_spec_asks(
    api: TestClient, auth: dict[str, str], reporter: ApiReporter, tmp_path: Path
) -> None:
    policy = {"keep_last": 1, "keep_best": {"metric": "val_accuracy", "mode": "max"}}
    spec = {**TINY_SYNTHETIC, "checkpoints": policy}
    job_id = str(api.post("/v1/jobs", json=spec, headers=auth).json()["id"])
    assert reporter.claim(job_id, "test-worker") is not None
    context = JobContext(reporter, job_id, 1, 5, tmp_path / "scratch")
    for epoch, accuracy in enumerate([0.6, 0.9, 0.7, 0.9, 0.8], start=1):
        reporter.post_metrics(job_id, 1, {"epoch": epoch, "val_accuracy": accuracy})
        context.save_checkpoint(state(epoch))

    # Epochs 2 and 4 tie at 0.9: the newer one is kept; epoch 5 is the newest, to resume from.
    assert checkpoint_names(job_id) == ["checkpoint-epoch4.pt", "checkpoint-epoch5.pt"]
    listed = api.get(f"/v1/jobs/{job_id}/checkpoints", headers=auth).json()["items"]
    assert [(item["epoch"], item["metrics"]["val_accuracy"]) for item in listed] == [
        (4, 0.9),
        (5, 0.8),
    ]
    resumed = JobContext(reporter, job_id, 1, 5, tmp_path / "elsewhere").load_checkpoint()
    assert resumed is not None
    assert resumed["epoch"] == 5
