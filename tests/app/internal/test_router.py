"""Worker-facing routes through the ASGI app: claim, heartbeat, metrics, artifacts, finish, fencing.

Each test plays the worker's side over HTTP and checks what the job's owner then sees on the public
routes, and what lies on disk under the artifact directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from taas.app.core.config import get_settings
from taas.app.jobs.time_limits import attempt_time_limit, describe_time_limit
from tests.conftest import TINY_SYNTHETIC, epoch_progress

INTERNAL = "/internal/v1/jobs"
WEIGHTS = bytes(range(256)) * 8  # 2 KiB standing in for model.safetensors
MODEL_JSON = b'{"format": "taas-model", "classes": 10}'


def submit(api: TestClient, auth: dict[str, str]) -> str:
    response = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def claim(api: TestClient, worker_auth: dict[str, str], job_id: str) -> httpx.Response:
    return api.post(f"{INTERNAL}/{job_id}/claim", json={"worker": "gpu-box-1"}, headers=worker_auth)


def claimed_job(api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]) -> str:
    job_id = submit(api, auth)
    assert claim(api, worker_auth, job_id).status_code == 200
    return job_id


def write(
    api: TestClient, worker_auth: dict[str, str], job_id: str, action: str, body: dict[str, Any]
) -> httpx.Response:
    """POST heartbeat/metrics/finish/events for attempt 1 (or the attempt in ``action``)."""
    path = action if "/" in action else f"attempts/1/{action}"
    return api.post(f"{INTERNAL}/{job_id}/{path}", json=body, headers=worker_auth)


def upload(
    api: TestClient,
    worker_auth: dict[str, str],
    job_id: str,
    name: str,
    data: bytes,
    *,
    attempt: int = 1,
    sha256: str | None = None,
    kind: str = "model",
) -> httpx.Response:
    headers = {**worker_auth, "X-Content-SHA256": sha256 or hashlib.sha256(data).hexdigest()}
    segment = quote(name, safe="")
    if segment in {".", ".."}:
        segment = segment.replace(".", "%2E")  # or the client resolves it as a dot segment
    return api.put(
        f"{INTERNAL}/{job_id}/attempts/{attempt}/artifacts/{segment}",
        content=data,
        params={"kind": kind},
        headers=headers,
    )


def upload_model(api: TestClient, worker_auth: dict[str, str], job_id: str) -> None:
    assert upload(api, worker_auth, job_id, "model.json", MODEL_JSON, kind="metadata").is_success
    assert upload(api, worker_auth, job_id, "model.safetensors", WEIGHTS).is_success


def finish(
    api: TestClient, worker_auth: dict[str, str], job_id: str, **body: Any
) -> httpx.Response:
    return write(api, worker_auth, job_id, "finish", body)


def stored_files(job_id: str | None = None) -> list[Path]:
    """Every file under the artifact directory (or under one job's folder of it)."""
    root = get_settings().resolved_artifact_dir
    folder = root / job_id if job_id else root
    return sorted(path for path in folder.rglob("*") if path.is_file())


def job(api: TestClient, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/jobs/{job_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dGFhczp0YWFz", "api-key"],
    ids=["missing", "wrong", "basic", "api-key"],
)
def test_worker_routes_need_the_worker_token(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    authorization: str | None,
) -> None:
    job_id = submit(api, auth)
    if authorization == "api-key":
        headers = auth  # a tenant's API key is not a worker token
    else:
        headers = {"Authorization": authorization} if authorization else {}
    routes = [
        ("POST", f"{INTERNAL}/{job_id}/claim", {"worker": "w"}),
        ("POST", f"{INTERNAL}/{job_id}/attempts/1/heartbeat", {}),
        ("POST", f"{INTERNAL}/{job_id}/attempts/1/finish", {"status": "failed"}),
    ]
    for method, path, body in routes:
        response = api.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert "worker token" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    refused = api.put(
        f"{INTERNAL}/{job_id}/attempts/1/artifacts/model.json",
        content=b"{}",
        headers={**headers, "X-Content-SHA256": hashlib.sha256(b"{}").hexdigest()},
    )
    assert refused.status_code == 401
    assert job(api, auth, job_id)["status"] == "queued"
    assert stored_files() == []


def test_claim_starts_attempt_1_and_only_one_worker_wins(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit(api, auth)
    spec = job(api, auth, job_id)["spec"]

    first = claim(api, worker_auth, job_id)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "job_id": job_id,
        "attempt": 1,
        "spec": spec,
        "heartbeat_seconds": get_settings().heartbeat_seconds,
        "time_limit_seconds": attempt_time_limit(spec, get_settings()),
        "time_limit": describe_time_limit(spec, get_settings()),
        "dataset": None,  # a built-in: nothing to fetch
    }
    running = job(api, auth, job_id)
    assert (running["status"], running["attempt"]) == ("running", 1)
    assert running["started_at"] is not None

    second = claim(api, worker_auth, job_id)
    assert second.status_code == 409
    assert "running" in second.json()["detail"]
    assert job(api, auth, job_id)["attempt"] == 1
    events = api.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["items"]
    assert [(event["status"], event["attempt"]) for event in events] == [
        ("queued", None),
        ("running", 1),
    ]
    assert "gpu-box-1" in events[-1]["message"]


def test_a_cancelled_job_cannot_be_claimed(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit(api, auth)
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=auth).json()["status"] == "cancelled"
    response = claim(api, worker_auth, job_id)
    assert response.status_code == 409
    assert "cancelled" in response.json()["detail"]
    assert job(api, auth, job_id)["attempt"] == 0


def test_heartbeat_records_progress_and_carries_the_users_cancel(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    beat = write(api, worker_auth, job_id, "heartbeat", {"epoch": 1, "fraction": 0.5})
    assert beat.status_code == 200, beat.text
    assert beat.json() == {"cancel": False, "prune": False}
    progress = job(api, auth, job_id)["progress"]
    assert (progress["epoch"], progress["epochs"], progress["fraction"]) == (1, 2, 0.5)
    assert progress["batches_done"] is None  # a per-epoch report says nothing within the epoch

    cancelled = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelling"
    beat = write(api, worker_auth, job_id, "heartbeat", {"epoch": 1, "fraction": 0.6})
    assert beat.json() == {"cancel": True, "prune": False}

    # The worker stops and says so; only then is the job terminal.
    done = finish(api, worker_auth, job_id, status="cancelled", stop_reason="cancelled")
    assert done.status_code == 200, done.text
    final = job(api, auth, job_id)
    assert (final["status"], final["stop_reason"]) == ("cancelled", "cancelled")
    assert final["finished_at"] is not None
    assert final["error"] == {
        "type": "cancelled",
        "message": "cancelled by the user; it stopped after epoch 1",
    }


def test_metrics_are_stored_once_per_epoch(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    point = {"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.7, "lr": 0.001}
    assert write(api, worker_auth, job_id, "metrics", point).status_code == 200
    # A retried post of the same epoch (the first response was lost) stores nothing new.
    retry = {**point, "train_loss": 0.1}
    assert write(api, worker_auth, job_id, "metrics", retry).status_code == 200

    items = api.get(f"/v1/jobs/{job_id}/metrics", headers=auth).json()["items"]
    assert items == [
        {
            "epoch": 1,
            "train_loss": 0.9,
            "train_accuracy": 0.7,
            "val_loss": None,
            "val_accuracy": None,
            "lr": 0.001,
            "epoch_seconds": None,
            "samples_per_second": None,
        }
    ]
    described = job(api, auth, job_id)
    assert epoch_progress(described) == {"epoch": 1, "epochs": 2, "fraction": 0.5}
    assert described["metrics"]["latest"] == items[0]

    assert write(api, worker_auth, job_id, "metrics", {"epoch": 2}).status_code == 200
    items = api.get(f"/v1/jobs/{job_id}/metrics", headers=auth).json()["items"]
    assert [item["epoch"] for item in items] == [1, 2]
    assert job(api, auth, job_id)["progress"]["fraction"] == 1.0


def test_writes_from_another_attempt_are_refused(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    for action, body in [
        ("attempts/2/heartbeat", {"epoch": 2, "fraction": 1.0}),
        ("attempts/2/metrics", {"epoch": 1, "train_loss": 0.5}),
        ("attempts/2/events", {"message": "hello from nowhere"}),
        ("attempts/2/finish", {"status": "failed"}),
    ]:
        response = write(api, worker_auth, job_id, action, body)
        assert response.status_code == 409, (action, response.text)
        assert "attempt 2" in response.json()["detail"]
    stale_upload = upload(api, worker_auth, job_id, "model.json", MODEL_JSON, attempt=2)
    assert stale_upload.status_code == 409
    assert stored_files() == []

    described = job(api, auth, job_id)
    assert (described["status"], described["attempt"]) == ("running", 1)
    assert described["progress"]["epoch"] == 0
    assert api.get(f"/v1/jobs/{job_id}/metrics", headers=auth).json()["items"] == []
    assert api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"] == []


def test_success_needs_both_model_files_from_this_attempt(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    refused = finish(api, worker_auth, job_id, status="succeeded", test_accuracy=0.9)
    assert refused.status_code == 409
    assert "model.json" in refused.json()["detail"]
    assert "model.safetensors" in refused.json()["detail"]

    assert upload(api, worker_auth, job_id, "model.json", MODEL_JSON).status_code == 200
    refused = finish(api, worker_auth, job_id, status="succeeded", test_accuracy=0.9)
    assert refused.status_code == 409
    assert "model.safetensors" in refused.json()["detail"]
    assert job(api, auth, job_id)["status"] == "running"


def test_upload_with_a_wrong_sha256_is_discarded(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    wrong = hashlib.sha256(b"something else").hexdigest()
    response = upload(api, worker_auth, job_id, "model.safetensors", WEIGHTS, sha256=wrong)
    assert response.status_code == 422
    assert "sha256" in response.json()["detail"]
    assert wrong in response.json()["detail"]
    assert stored_files() == []
    assert api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"] == []
    assert job(api, auth, job_id)["artifacts"] == []


def test_uploaded_artifact_is_listed_and_downloadable(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    digest = hashlib.sha256(WEIGHTS).hexdigest()
    response = upload(api, worker_auth, job_id, "model.safetensors", WEIGHTS)
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}

    (listed,) = api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"]
    assert listed["name"] == "model.safetensors"
    assert listed["kind"] == "model"
    assert listed["size_bytes"] == len(WEIGHTS)
    assert listed["sha256"] == digest
    assert job(api, auth, job_id)["artifacts"] == ["model.safetensors"]
    assert len(stored_files(job_id)) == 1

    url = f"/v1/jobs/{job_id}/artifacts/model.safetensors"
    download = api.get(url, headers=auth)
    assert download.status_code == 200
    assert download.content == WEIGHTS
    assert download.headers["etag"] == f'"{digest}"'
    assert download.headers["content-type"] == "application/octet-stream"
    assert 'filename="model.safetensors"' in download.headers["content-disposition"]

    cached = api.get(url, headers={**auth, "If-None-Match": f'"{digest}"'})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == f'"{digest}"'

    partial = api.get(url, headers={**auth, "Range": "bytes=100-299"})
    assert partial.status_code == 206
    assert partial.content == WEIGHTS[100:300]
    assert partial.headers["content-range"] == f"bytes 100-299/{len(WEIGHTS)}"

    for tag in ("*", f'W/"{digest}"', f'"other", "{digest}"'):
        assert api.get(url, headers={**auth, "If-None-Match": tag}).status_code == 304, tag
    stale = api.get(url, headers={**auth, "If-None-Match": '"0000"'})
    assert stale.status_code == 200


def test_an_artifact_whose_file_vanished_is_404_not_500(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    assert upload(api, worker_auth, job_id, "model.safetensors", WEIGHTS).is_success
    (stored,) = stored_files(job_id)
    stored.unlink()
    response = api.get(f"/v1/jobs/{job_id}/artifacts/model.safetensors", headers=auth)
    assert response.status_code == 404
    assert "missing from storage" in response.json()["detail"]


def test_uploading_the_same_name_again_replaces_the_file(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    first = upload(api, worker_auth, job_id, "checkpoint-epoch1.pt", b"epoch 1", kind="checkpoint")
    assert first.status_code == 200, first.text
    (old_file,) = stored_files(job_id)

    newer = b"epoch 2, a bigger checkpoint"
    response = upload(api, worker_auth, job_id, "checkpoint-epoch1.pt", newer, kind="checkpoint")
    assert response.status_code == 200, response.text
    (new_file,) = stored_files(job_id)
    assert not old_file.exists()
    assert new_file.read_bytes() == newer

    (listed,) = api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"]
    assert (listed["size_bytes"], listed["sha256"]) == (
        len(newer),
        hashlib.sha256(newer).hexdigest(),
    )
    assert (
        api.get(f"/v1/jobs/{job_id}/artifacts/checkpoint-epoch1.pt", headers=auth).content == newer
    )


def test_a_succeeded_job_is_terminal(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    assert write(api, worker_auth, job_id, "metrics", {"epoch": 2, "val_accuracy": 0.8}).is_success
    upload_model(api, worker_auth, job_id)
    done = finish(
        api,
        worker_auth,
        job_id,
        status="succeeded",
        test_accuracy=0.875,
        test_loss=0.42,
        stop_reason="completed",
        device="cpu",
        acceleration={"amp": False, "compile": False},
    )
    assert done.status_code == 200, done.text

    final = job(api, auth, job_id)
    assert final["status"] == "succeeded"
    assert final["metrics"]["test_accuracy"] == 0.875
    assert final["metrics"]["test_loss"] == 0.42
    assert epoch_progress(final) == {"epoch": 2, "epochs": 2, "fraction": 1.0}
    assert final["finished_at"] is not None
    assert final["error"] is None
    assert (final["device"], final["stop_reason"]) == ("cpu", "completed")
    assert final["acceleration"] == {"amp": False, "compile": False}
    assert final["artifacts"] == ["model.json", "model.safetensors"]

    cancel = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert cancel.status_code == 409
    assert "succeeded" in cancel.json()["detail"]
    for action, body in [
        ("heartbeat", {"epoch": 2, "fraction": 1.0}),
        ("metrics", {"epoch": 3}),
        ("finish", {"status": "failed", "error_type": "infra"}),
        ("finish", {"status": "succeeded"}),
    ]:
        response = write(api, worker_auth, job_id, action, body)
        assert response.status_code == 409, (action, response.text)
        assert "succeeded" in response.json()["detail"]
    assert upload(api, worker_auth, job_id, "model.json", b"{}").status_code == 409
    assert claim(api, worker_auth, job_id).status_code == 409
    assert job(api, auth, job_id) == final
    statuses = [
        event["status"]
        for event in api.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["items"]
    ]
    assert statuses == ["queued", "running", "succeeded"]


def test_a_failure_records_its_error(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    message = "CUDA out of memory while allocating 2.00 GiB"
    response = finish(
        api, worker_auth, job_id, status="failed", error_type="infra", error_message=message
    )
    assert response.status_code == 200, response.text
    final = job(api, auth, job_id)
    assert final["status"] == "failed"
    assert final["error"] == {"type": "infra", "message": message}
    assert final["finished_at"] is not None
    last = api.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["items"][-1]
    assert last["status"] == "failed"
    assert message in last["message"]


def test_a_failure_without_details_is_still_explained(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    assert finish(api, worker_auth, job_id, status="failed").status_code == 200
    error = job(api, auth, job_id)["error"]
    assert error["type"] == "internal"
    assert error["message"]


def test_deleting_a_finished_job_removes_its_files(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    kept_id = claimed_job(api, auth, worker_auth)
    for each in (job_id, kept_id):
        upload_model(api, worker_auth, each)
        assert finish(api, worker_auth, each, status="succeeded").status_code == 200
    assert len(stored_files(job_id)) == 2

    assert api.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert not (get_settings().resolved_artifact_dir / job_id).exists()
    assert api.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 404
    assert api.get(f"/v1/jobs/{job_id}/artifacts/model.json", headers=auth).status_code == 404
    # The other job's files are untouched.
    assert len(stored_files(kept_id)) == 2
    download = api.get(f"/v1/jobs/{kept_id}/artifacts/model.json", headers=auth)
    assert download.content == MODEL_JSON


@pytest.mark.parametrize(
    "name",
    ["..", "a..b", "../model.json", "nested/model.json", "/etc/passwd", ".hidden", "a" * 101],
)
def test_unsafe_artifact_names_are_refused(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str], name: str
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    response = upload(api, worker_auth, job_id, name, b"data")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "name"]
    assert stored_files() == []
    assert api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"] == []


def test_a_name_of_100_characters_is_accepted(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    name = "a" * 96 + ".bin"
    assert upload(api, worker_auth, job_id, name, b"data", kind="export").status_code == 200
    assert job(api, auth, job_id)["artifacts"] == [name]
