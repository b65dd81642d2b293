"""The API with its files in object storage (a real S3 endpoint): workers upload straight to the
store, users download through the API or by redirect, datasets arrive by presigned upload,
deletion deletes, a vanished checkpoint is said, and a store that is down is a 503."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from taas.app.core.config import get_settings
from tests.app.artifacts import claimed_job, upload
from tests.app.datasets.test_router import npz_bytes
from tests.conftest import clear_caches
from tests.storage_server import S3Server

INTERNAL = "/internal/v1/jobs"
DATA = random.Random(11).randbytes(200_000)
DIGEST = hashlib.sha256(DATA).hexdigest()


def bucket_keys(s3_server: S3Server) -> list[str]:
    bucket = get_settings().storage_url.removeprefix("s3://").split("/")[0]  # type: ignore[union-attr]
    return s3_server.keys(bucket)


def describe(data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    return {"size_bytes": len(data), "sha256": digest, "part_sha256": [digest]}


def direct_upload(
    api: TestClient,
    worker_auth: dict[str, str],
    job_id: str,
    name: str,
    data: bytes,
    *,
    kind: str = "model",
    declared: bytes | None = None,
) -> httpx.Response:
    """The worker's protocol: ask for URLs, PUT the bytes to the store, complete."""
    base = f"{INTERNAL}/{job_id}/attempts/1/direct-uploads"
    file = {"name": name, "kind": kind, **describe(declared or data)}
    plan = api.post(base, json=file, headers=worker_auth)
    assert plan.status_code == 200, plan.text
    assert plan.json()["direct"] is True
    part = plan.json()["parts"][0]
    put = httpx.put(part["url"], content=data, headers=part["headers"])
    assert put.status_code == 200, put.text
    completion = {**file, "key": plan.json()["key"], "etags": [put.headers["etag"]]}
    return api.post(f"{base}/complete", json=completion, headers=worker_auth)


@pytest.fixture
def job_id(
    s3_home: Path, api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> str:
    return claimed_job(api, auth, worker_auth)


def test_a_worker_uploads_straight_to_the_store_and_the_api_serves_it(
    job_id: str,
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    s3_server: S3Server,
) -> None:
    assert direct_upload(api, worker_auth, job_id, "weights.bin", DATA).status_code == 200
    [row] = api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"]
    assert (row["name"], row["size_bytes"], row["sha256"]) == ("weights.bin", len(DATA), DIGEST)
    url = f"/v1/jobs/{job_id}/artifacts/weights.bin"
    whole = api.get(url, headers=auth)
    assert whole.status_code == 200
    assert whole.content == DATA
    assert whole.headers["etag"] == f'"{DIGEST}"'
    assert whole.headers["content-disposition"] == 'attachment; filename="weights.bin"'
    part = api.get(url, headers={**auth, "Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == DATA[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(DATA)}"
    cached = api.get(url, headers={**auth, "If-None-Match": f'"{DIGEST}"'})
    assert cached.status_code == 304
    assert [key.split("/")[1:3] for key in bucket_keys(s3_server)] == [["artifacts", job_id]]


def test_redirect_mode_answers_with_a_presigned_url_of_the_same_bytes(
    job_id: str,
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert direct_upload(api, worker_auth, job_id, "weights.bin", DATA).status_code == 200
    monkeypatch.setenv("TAAS_STORAGE_DOWNLOADS", "redirect")
    get_settings.cache_clear()
    answer = api.get(
        f"/v1/jobs/{job_id}/artifacts/weights.bin", headers=auth, follow_redirects=False
    )
    assert answer.status_code == 307
    assert answer.headers["etag"] == f'"{DIGEST}"'
    fetched = httpx.get(answer.headers["location"])  # no API key: the URL is the credential
    assert fetched.status_code == 200
    assert fetched.content == DATA


def test_a_direct_upload_that_differs_from_its_sha256_is_refused_and_removed(
    job_id: str,
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    s3_server: S3Server,
) -> None:
    corrupt = DATA[:-1] + b"\x00"
    response = direct_upload(api, worker_auth, job_id, "weights.bin", corrupt, declared=DATA)
    assert response.status_code == 422, response.text
    assert "sha256" in response.text
    assert api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"] == []
    assert bucket_keys(s3_server) == []


def test_the_filesystem_store_tells_workers_to_upload_through_the_api(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    body = {"name": "weights.bin", "kind": "model", **describe(DATA)}
    plan = api.post(
        f"{INTERNAL}/{job_id}/attempts/1/direct-uploads", json=body, headers=worker_auth
    )
    assert plan.status_code == 200
    assert plan.json()["direct"] is False


def test_deleting_a_job_deletes_its_objects(
    job_id: str,
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    s3_server: S3Server,
) -> None:
    assert upload(api, worker_auth, job_id, "through-api.bin", DATA).status_code == 200
    assert direct_upload(api, worker_auth, job_id, "direct.bin", DATA).status_code == 200
    # An upload the worker began and never finished: its parts go with the job too.
    body = {"name": "big.bin", "kind": "model", "size_bytes": 100 * 1024**2}
    body |= {"sha256": "0" * 64, "part_sha256": ["0" * 64, "1" * 64]}
    begun = api.post(
        f"{INTERNAL}/{job_id}/attempts/1/direct-uploads", json=body, headers=worker_auth
    )
    assert begun.json()["upload_id"]
    assert len(bucket_keys(s3_server)) == 3
    finished = api.post(
        f"{INTERNAL}/{job_id}/attempts/1/finish", json={"status": "failed"}, headers=worker_auth
    )
    assert finished.status_code == 200, finished.text
    assert api.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert bucket_keys(s3_server) == []


def test_a_checkpoint_deleted_behind_taas_is_skipped_and_said(
    job_id: str,
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    s3_server: S3Server,
) -> None:
    for epoch in (1, 2):
        name = f"checkpoint-epoch{epoch}.pt"
        assert upload(api, worker_auth, job_id, name, DATA, kind="checkpoint").status_code == 200
    [newest] = [
        key
        for key in bucket_keys(s3_server)
        if _row_key(api, auth, job_id, "checkpoint-epoch2.pt") in key
    ]
    bucket = get_settings().storage_url.removeprefix("s3://").split("/")[0]  # type: ignore[union-attr]
    s3_server.client().delete_object(Bucket=bucket, Key=newest)  # type: ignore[attr-defined]

    url = f"{INTERNAL}/{job_id}/attempts/1/checkpoint"
    answer = api.get(url, headers=worker_auth, follow_redirects=False)
    assert answer.status_code == 307, answer.text
    assert answer.headers["x-artifact-name"] == "checkpoint-epoch1.pt"
    assert httpx.get(answer.headers["location"]).content == DATA
    events = api.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["items"]
    assert any("checkpoint-epoch2.pt is missing from storage" in e["message"] for e in events)

    s3_server.client().delete_object(Bucket=bucket, Key=bucket_keys(s3_server)[0])  # type: ignore[attr-defined]
    assert api.get(url, headers=worker_auth, follow_redirects=False).status_code == 404
    names = [
        row["name"] for row in api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"]
    ]
    assert names == []


def _row_key(api: TestClient, auth: dict[str, str], job_id: str, name: str) -> str:
    from sqlalchemy import select

    from taas.app.artifacts.models import Artifact
    from taas.app.core.db import session_scope

    with session_scope() as session:
        return str(
            session.scalar(
                select(Artifact.storage_key).where(Artifact.job_id == job_id, Artifact.name == name)
            )
        )


def presigned_dataset_upload(
    api: TestClient,
    auth: dict[str, str],
    data: bytes,
    declared: bytes | None = None,
    **fields: str,
) -> httpx.Response:
    begun = api.post(
        "/v1/dataset-uploads",
        json={"filename": "big.npz", **describe(declared or data), **fields},
        headers=auth,
    )
    assert begun.status_code == 201, begun.text
    part = begun.json()["parts"][0]
    put = httpx.put(part["url"], content=data, headers=part["headers"])
    assert put.status_code == 200, put.text
    return api.post(
        f"/v1/dataset-uploads/{begun.json()['id']}/complete",
        json={"etags": [put.headers["etag"]]},
        headers=auth,
    )


def test_a_dataset_uploaded_straight_to_the_store_is_validated_and_kept(
    s3_home: Path, api: TestClient, auth: dict[str, str], s3_server: S3Server
) -> None:
    done = presigned_dataset_upload(api, auth, npz_bytes(), name="straight")
    assert done.status_code == 201, done.text
    dataset = done.json()
    assert (dataset["name"], dataset["format"], dataset["train_size"]) == ("straight", "npz", 40)
    assert [key.split("/", 1)[1] for key in bucket_keys(s3_server)] == [
        f"datasets/{dataset['id']}.safetensors"
    ]
    again = presigned_dataset_upload(api, auth, npz_bytes())
    assert again.status_code == 200
    assert again.json()["id"] == dataset["id"]
    assert api.delete(f"/v1/datasets/{dataset['id']}", headers=auth).status_code == 204
    assert bucket_keys(s3_server) == []


def test_a_presigned_upload_that_is_no_dataset_is_refused_and_not_kept(
    s3_home: Path, api: TestClient, auth: dict[str, str], s3_server: S3Server
) -> None:
    refused = presigned_dataset_upload(api, auth, b"not a zip file at all")
    assert refused.status_code in (415, 422), refused.text
    assert bucket_keys(s3_server) == []
    assert api.get("/v1/datasets", headers=auth).json()["items"][-1]["kind"] == "builtin"


def test_a_presigned_upload_of_other_bytes_than_declared_is_refused_and_not_kept(
    s3_home: Path, api: TestClient, auth: dict[str, str], s3_server: S3Server
) -> None:
    sent = npz_bytes(seed=1)
    refused = presigned_dataset_upload(api, auth, sent, declared=npz_bytes(seed=2))
    assert refused.status_code == 422, refused.text
    assert "is not the one declared" in refused.text
    assert bucket_keys(s3_server) == []


def test_presigned_uploads_are_refused_where_files_stay_on_the_filesystem(
    api: TestClient, auth: dict[str, str]
) -> None:
    response = api.post(
        "/v1/dataset-uploads", json={"filename": "d.npz", **describe(b"abc")}, headers=auth
    )
    assert response.status_code == 409
    assert "TAAS_STORAGE_URL" in response.json()["detail"]


def test_a_presigned_upload_over_the_limit_is_refused_before_any_byte_is_sent(
    s3_home: Path, api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAAS_MAX_DIRECT_UPLOAD_BYTES", "1000")
    get_settings.cache_clear()
    response = api.post(
        "/v1/dataset-uploads", json={"filename": "d.npz", **describe(b"x" * 1001)}, headers=auth
    )
    assert response.status_code == 413
    assert "TAAS_MAX_DIRECT_UPLOAD_BYTES" in response.json()["detail"]


def test_a_store_that_is_down_is_reported_and_new_work_gets_503(
    s3_home: Path, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from taas.app.main import create_app
    from tests.conftest import TINY_SYNTHETIC, clear_caches

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    clear_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as api:
        ready = api.get("/readyz")
        assert ready.status_code == 200  # workers must still reach it to finish their jobs
        assert ready.json()["status"] == "degraded"
        assert ready.json()["object_storage"] == "down"
        assert "unreachable" in ready.json()["object_storage_problem"]
        submitted = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth)
        assert submitted.status_code == 503, submitted.text
        assert int(submitted.headers["retry-after"]) > 0
        assert "new job refused for now" in submitted.json()["detail"]
        files = {"file": ("d.npz", npz_bytes(), "application/octet-stream")}
        uploaded = api.post("/v1/datasets", files=files, headers=auth)
        assert uploaded.status_code == 503
        assert api.get("/v1/jobs", headers=auth).json()["items"] == []


def test_readiness_says_the_store_answers(s3_home: Path, api: TestClient) -> None:
    ready = api.get("/readyz").json()
    assert (ready["status"], ready["object_storage"], ready["storage"]) == ("ok", "ok", "ok")
    started = time.monotonic()
    api.get("/readyz")
    assert time.monotonic() - started < 1


def finish(api: TestClient, worker_auth: dict[str, str], job_id: str) -> None:
    done = api.post(
        f"{INTERNAL}/{job_id}/attempts/1/finish", json={"status": "failed"}, headers=worker_auth
    )
    assert done.status_code == 200, done.text


def test_retention_deletes_the_objects_with_their_rows(
    job_id: str,
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy import update

    from taas.app.core.db import session_scope, utcnow
    from taas.app.jobs.models import Job
    from taas.app.scheduling.reconciler import reconcile

    assert direct_upload(api, worker_auth, job_id, "model.safetensors", DATA).status_code == 200
    finish(api, worker_auth, job_id)
    with session_scope() as session:
        ended = utcnow().replace(year=utcnow().year - 1)
        session.execute(update(Job).where(Job.id == job_id).values(finished_at=ended))
    monkeypatch.setenv("TAAS_ARTIFACT_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    assert bucket_keys(s3_server) != []
    reconcile(get_settings(), expire_leases=False)
    assert bucket_keys(s3_server) == []
    assert api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"] == []


def test_a_delete_while_the_store_is_down_succeeds_and_gc_removes_the_objects_later(
    job_id: str,
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taas.app.storage.factory import clear_storage_caches, store_for
    from taas.app.storage.maintenance import collect_garbage

    assert direct_upload(api, worker_auth, job_id, "model.safetensors", DATA).status_code == 200
    finish(api, worker_auth, job_id)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the store goes away
    clear_storage_caches()
    assert api.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert api.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 404
    [orphan] = bucket_keys(s3_server)  # still there: the delete could not reach the store

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)  # it is back
    monkeypatch.setenv("TAAS_STORAGE_ORPHAN_SECONDS", "1")
    clear_caches()
    time.sleep(1.5)
    collected = collect_garbage(store_for(get_settings()), get_settings())
    assert [f"deployment/{key}" for key in collected.deleted] == [orphan]  # under the prefix
    assert bucket_keys(s3_server) == []


def test_completing_an_upload_whose_bytes_never_arrived_is_refused(
    job_id: str, api: TestClient, worker_auth: dict[str, str], s3_server: S3Server
) -> None:
    base = f"{INTERNAL}/{job_id}/attempts/1/direct-uploads"
    file = {"name": "model.safetensors", "kind": "model", **describe(DATA)}
    plan = api.post(base, json=file, headers=worker_auth).json()
    completion = {**file, "key": plan["key"], "etags": ['"never-sent"']}
    answer = api.post(f"{base}/complete", json=completion, headers=worker_auth)
    assert answer.status_code == 422
    assert "nothing arrived in storage" in answer.text
    assert bucket_keys(s3_server) == []


def test_an_upload_this_host_cannot_decode_is_refused_before_its_bytes_are_sent(
    s3_home: Path, api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from taas.app.core import kernel_memory

    gib = 1024**3
    monkeypatch.setattr(kernel_memory, "host_memory", lambda: (gib, 2 * gib, True))
    too_big = {"filename": "d.npz", **describe(b"x")} | {"size_bytes": 3 * gib}
    too_big["part_sha256"] = ["0" * 64] * 48
    answer = api.post("/v1/dataset-uploads", json=too_big, headers=auth)
    assert answer.status_code == 413, answer.text
    assert "more than its memory limit (2048 MiB)" in answer.json()["detail"]


def test_an_upload_waits_for_memory_with_a_503_instead_of_risking_the_oom_killer(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from taas.app.core import kernel_memory

    monkeypatch.setattr(kernel_memory, "host_memory", lambda: (10 * 1024**2, 8 * 1024**3, False))
    files = {"file": ("d.npz", npz_bytes(), "application/octet-stream")}
    answer = api.post("/v1/datasets", files=files, headers=auth)
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "30"
    assert "10 MiB of this host's memory is free now: retry later" in answer.json()["detail"]
    assert api.get("/v1/datasets", headers=auth).json()["items"][-1]["kind"] == "builtin"
