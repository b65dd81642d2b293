"""PUT /internal/v1/jobs/{id}/attempts/{n}/artifacts/{name}: only verified bytes of the live attempt
are kept. A refused, cut or stale upload leaves no file in the job's folder and no artifact row.

The first tests go through the ASGI app; the last ones need a real `taas api` process, because only
a real server sees a client vanish mid-body or another request land while a body streams in.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from taas.app.core.config import get_settings
from tests.app.artifacts import (
    artifact_rows,
    claimed_job,
    files_under,
    start_sqlite_api,
    upload,
    upload_url,
)
from tests.conftest import TINY_SYNTHETIC, WORKER_TOKEN

MB = 1024 * 1024
DATA = random.Random(3).randbytes(300_000)
DIGEST = hashlib.sha256(DATA).hexdigest()


def job_folder(job_id: str) -> Path:
    return get_settings().resolved_artifact_dir / job_id


def test_a_verified_upload_is_stored_once_with_its_digest(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    response = upload(api, worker_auth, job_id, "model.safetensors", DATA)
    assert response.status_code == 200, response.text
    ((row,), (stored,)) = artifact_rows(api, auth, job_id), files_under(job_folder(job_id))
    assert (row["name"], row["size_bytes"], row["sha256"]) == ("model.safetensors", 300_000, DIGEST)
    assert stored.read_bytes() == DATA


def test_a_wrong_sha256_is_refused_naming_both_digests_and_stores_nothing(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    declared = hashlib.sha256(b"the bytes the worker meant to send").hexdigest()
    response = upload(api, worker_auth, job_id, "model.safetensors", DATA, sha256=declared)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "sha256 mismatch" in detail
    assert declared in detail
    assert DIGEST in detail
    assert files_under(job_folder(job_id)) == []  # the temporary file went too
    assert artifact_rows(api, auth, job_id) == []

    # The worker's retry with the right digest then goes through.
    assert upload(api, worker_auth, job_id, "model.safetensors", DATA).status_code == 200
    assert len(files_under(job_folder(job_id))) == 1


@pytest.mark.parametrize(
    "header",
    [None, "", DIGEST.upper(), DIGEST[:-1], DIGEST + "0", "g" * 64, f'"{DIGEST}"'],
    ids=["missing", "empty", "uppercase", "63-hex", "65-hex", "not-hex", "quoted"],
)
def test_a_missing_or_malformed_digest_header_is_422(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str], header: str | None
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    headers = dict(worker_auth) if header is None else {**worker_auth, "X-Content-SHA256": header}
    response = api.put(upload_url(job_id, "model.safetensors"), content=DATA, headers=headers)
    assert response.status_code == 422, response.text
    assert "x-content-sha256" in json.dumps(response.json()["detail"]).lower()
    assert not job_folder(job_id).exists()  # refused before any byte was stored
    assert artifact_rows(api, auth, job_id) == []


def test_uploading_a_name_again_in_the_same_attempt_keeps_one_row_and_the_latest_bytes(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    first = b"checkpoint after epoch 1"
    for _ in range(2):  # a retry of the same bytes (the first answer was lost)
        response = upload(api, worker_auth, job_id, "last.bin", first)
        assert response.status_code == 200, response.text
    (old_file,) = files_under(job_folder(job_id))
    (row,) = artifact_rows(api, auth, job_id)
    assert row["sha256"] == hashlib.sha256(first).hexdigest()

    latest = b"checkpoint after epoch 2, a little longer"
    response = upload(api, worker_auth, job_id, "last.bin", latest)
    assert response.status_code == 200, response.text
    (row,) = artifact_rows(api, auth, job_id)
    assert (row["size_bytes"], row["sha256"]) == (len(latest), hashlib.sha256(latest).hexdigest())
    (new_file,) = files_under(job_folder(job_id))
    assert not old_file.exists()
    assert new_file.read_bytes() == latest
    assert api.get(f"/v1/jobs/{job_id}/artifacts/last.bin", headers=auth).content == latest


def test_an_upload_from_a_stale_attempt_is_409_and_stores_nothing(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    queued = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"]
    job_id = claimed_job(api, auth, worker_auth)
    for stale_job, attempt in [(queued, 1), (job_id, 2)]:
        response = upload(api, worker_auth, stale_job, "model.json", b"{}", attempt=attempt)
        assert response.status_code == 409, response.text
        assert f"attempt {attempt}" in response.json()["detail"]

    finished = api.post(
        f"/internal/v1/jobs/{job_id}/attempts/1/finish",
        json={"status": "failed"},
        headers=worker_auth,
    )
    assert finished.status_code == 200, finished.text
    response = upload(api, worker_auth, job_id, "model.json", b"{}")
    assert response.status_code == 409
    assert "failed" in response.json()["detail"]

    assert files_under(get_settings().resolved_artifact_dir) == []
    assert artifact_rows(api, auth, job_id) == []
    assert artifact_rows(api, auth, queued) == []


def test_an_upload_for_an_unknown_job_is_404_and_stores_nothing(
    api: TestClient, worker_auth: dict[str, str]
) -> None:
    job_id = "job_" + "0" * 24
    response = upload(api, worker_auth, job_id, "model.json", b"{}")
    assert response.status_code == 404
    assert job_id in response.json()["detail"]
    assert not job_folder(job_id).exists()


def test_an_upload_over_the_artifact_limit_is_413_and_stores_nothing(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAAS_MAX_ARTIFACT_BYTES", "1000")
    get_settings.cache_clear()
    job_id = claimed_job(api, auth, worker_auth)

    response = upload(api, worker_auth, job_id, "model.safetensors", b"x" * 1001)
    assert response.status_code == 413, response.text
    assert "1000 bytes" in response.json()["detail"]
    assert files_under(job_folder(job_id)) == []
    assert artifact_rows(api, auth, job_id) == []

    at_the_limit = upload(api, worker_auth, job_id, "model.safetensors", b"x" * 1000)
    assert at_the_limit.status_code == 200, at_the_limit.text


def test_the_api_keeps_answering_while_an_upload_is_synced_to_disk(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Disk writes and fsync happen off the event loop: a slow disk delays that upload only, not
    the heartbeats and downloads of everyone else."""
    job_id = claimed_job(api, auth, worker_auth)
    syncing, real_fsync = threading.Event(), os.fsync

    def slow_fsync(descriptor: int) -> None:
        if not syncing.is_set():
            syncing.set()
            time.sleep(1.5)  # a large file on a busy disk
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    uploaded: list[httpx.Response] = []
    uploader = threading.Thread(
        target=lambda: uploaded.append(upload(api, worker_auth, job_id, "model.bin", DATA))
    )
    uploader.start()
    assert syncing.wait(timeout=10)
    started = time.monotonic()
    assert api.get("/healthz").status_code == 200
    answered_in = time.monotonic() - started
    uploader.join(timeout=10)
    assert uploaded[0].status_code == 200, uploaded[0].text
    assert answered_in < 0.75, f"/healthz waited {answered_in:.2f}s behind an upload's fsync"


# --- a real server ---------------------------------------------------------------------------

WORKER_AUTH = {"Authorization": f"Bearer {WORKER_TOKEN}"}


@dataclass(frozen=True)
class Server:
    url: str
    artifact_dir: Path
    auth: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `taas api` for the tests below (each uses jobs of its own)."""
    deployment = start_sqlite_api(tmp_path_factory.mktemp("upload-server"))
    try:
        auth = {"Authorization": f"Bearer {deployment.create_key('acme')}"}
        yield Server(deployment.api_url, deployment.home / "artifacts", auth)
    finally:
        deployment.processes[0].stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up after {timeout}s waiting until {what}"
        time.sleep(0.02)


def partial_files(folder: Path) -> list[Path]:
    return [path for path in files_under(folder) if path.name.endswith(".partial")]


def received_one_mb(folder: Path) -> bool:
    """The server has written at least 1 MB of the body to its temporary file."""
    partial = partial_files(folder)
    try:
        return bool(partial) and partial[0].stat().st_size >= MB
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["close", "reset"])
def test_an_upload_cut_mid_stream_leaves_no_partial_file_and_no_row(
    server: Server, client: httpx.Client, how: str
) -> None:
    job_id = claimed_job(client, server.auth, WORKER_AUTH)
    folder = server.artifact_dir / job_id
    url = httpx.URL(server.url)
    declared = hashlib.sha256(b"a body that never arrives in full").hexdigest()
    head = (
        f"PUT {upload_url(job_id, 'model.safetensors')}?kind=model HTTP/1.1\r\n"
        f"Host: {url.host}:{url.port}\r\n"
        f"Authorization: Bearer {WORKER_TOKEN}\r\n"
        f"X-Content-SHA256: {declared}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {100 * MB}\r\n\r\n"
    )
    assert url.port is not None
    with socket.create_connection((url.host, url.port)) as connection:
        connection.sendall(head.encode() + bytes(2 * MB))
        wait_until(lambda: received_one_mb(folder), "the server wrote the first megabyte")
        if how == "reset":  # an abortive close: RST instead of FIN
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    wait_until(lambda: files_under(folder) == [], "the partial file is deleted")
    assert artifact_rows(client, server.auth, job_id) == []
    # The worker's retry in full then goes through, and is the only file.
    assert upload(client, WORKER_AUTH, job_id, "model.safetensors", DATA).status_code == 200
    assert len(files_under(folder)) == 1
    assert [row["sha256"] for row in artifact_rows(client, server.auth, job_id)] == [DIGEST]


def test_an_attempt_that_ends_while_its_upload_streams_stores_nothing(
    server: Server, client: httpx.Client
) -> None:
    """The attempt is checked again once the bytes are in: a worker that lost its job meanwhile
    must not add files to a job that already ended."""
    job_id = claimed_job(client, server.auth, WORKER_AUTH)
    folder = server.artifact_dir / job_id
    chunks = [random.Random(index).randbytes(MB) for index in range(4)]
    digest = hashlib.sha256(b"".join(chunks)).hexdigest()

    def body() -> Iterator[bytes]:
        yield chunks[0]
        yield chunks[1]
        wait_until(lambda: received_one_mb(folder), "the upload is streaming")
        with httpx.Client(base_url=server.url, timeout=30) as other:
            ended = other.post(
                f"/internal/v1/jobs/{job_id}/attempts/1/finish",
                json={"status": "failed", "error_type": "infra"},
                headers=WORKER_AUTH,
            )
        assert ended.status_code == 200, ended.text
        yield from chunks[2:]

    response = client.put(
        upload_url(job_id, "model.safetensors"),
        content=body(),
        headers={**WORKER_AUTH, "X-Content-SHA256": digest},
    )
    assert response.status_code == 409, response.text
    assert "attempt 1" in response.json()["detail"]
    assert files_under(folder) == []
    assert artifact_rows(client, server.auth, job_id) == []
    job = client.get(f"/v1/jobs/{job_id}", headers=server.auth).json()
    assert (job["status"], job["artifacts"]) == ("failed", [])
