"""The worker's side of object storage: files go straight to the store with presigned URLs
(retried when the store throttles, aborted when it refuses), checkpoints come back by redirect
and are verified."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from taas.app.core.config import get_settings
from taas.worker.reporter import ApiRefused, ApiReporter
from tests.conftest import TINY_SYNTHETIC, WORKER_TOKEN
from tests.storage_server import S3Server

DATA = b"checkpoint bytes " * 5000


class FlakyStore(httpx.BaseTransport):
    """The store's HTTP: the first ``failures`` PUTs answered with ``status``, the rest sent on."""

    def __init__(self, failures: int, status: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.failures, self.status, self.puts = failures, status, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.puts += 1
            if self.puts <= self.failures:
                request.read()
                return httpx.Response(self.status, text="<Error><Code>SlowDown</Code></Error>")
        return self.inner.handle_request(request)


@pytest.fixture
def reporter(s3_home: Path, api: TestClient) -> Iterator[ApiReporter]:
    reporter = ApiReporter("http://testserver", WORKER_TOKEN, attempts=4)
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


def bucket_keys(s3_server: S3Server) -> list[str]:
    bucket = get_settings().storage_url.removeprefix("s3://").split("/")[0]  # type: ignore[union-attr]
    return s3_server.keys(bucket)


def test_a_checkpoint_goes_straight_to_the_store_and_comes_back_verified(
    api: TestClient,
    auth: dict[str, str],
    reporter: ApiReporter,
    tmp_path: Path,
    s3_server: S3Server,
) -> None:
    job_id = running_job(api, auth, reporter)
    saved = tmp_path / "checkpoint-epoch1.pt"
    saved.write_bytes(DATA)
    reporter.upload_artifact(job_id, 1, saved, "checkpoint")
    [key] = bucket_keys(s3_server)
    assert f"/artifacts/{job_id}/" in key
    back = tmp_path / "back.pt"
    assert reporter.download_checkpoint(job_id, 1, back) == "checkpoint-epoch1.pt"
    assert back.read_bytes() == DATA


def test_a_throttling_store_is_retried_with_backoff(
    api: TestClient, auth: dict[str, str], reporter: ApiReporter, tmp_path: Path
) -> None:
    job_id = running_job(api, auth, reporter)
    reporter.store_client = httpx.Client(transport=FlakyStore(failures=2, status=503))
    model = tmp_path / "model.safetensors"
    model.write_bytes(DATA)
    reporter.upload_artifact(job_id, 1, model, "model")
    assert reporter.store_client._transport.puts == 3  # type: ignore[attr-defined]
    listed = api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"]
    assert [item["name"] for item in listed] == ["model.safetensors"]


def test_a_refused_upload_is_aborted_and_leaves_nothing(
    api: TestClient,
    auth: dict[str, str],
    reporter: ApiReporter,
    tmp_path: Path,
    s3_server: S3Server,
) -> None:
    job_id = running_job(api, auth, reporter)
    reporter.store_client = httpx.Client(transport=FlakyStore(failures=99, status=403))
    model = tmp_path / "model.safetensors"
    model.write_bytes(DATA)
    with pytest.raises(ApiRefused, match="403"):
        reporter.upload_artifact(job_id, 1, model, "model")
    assert reporter.store_client._transport.puts == 1  # type: ignore[attr-defined]
    assert bucket_keys(s3_server) == []
    assert api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"] == []


def test_a_store_that_stays_down_fails_the_upload_naming_it_and_leaves_nothing(
    api: TestClient,
    auth: dict[str, str],
    reporter: ApiReporter,
    tmp_path: Path,
    s3_server: S3Server,
) -> None:
    job_id = running_job(api, auth, reporter)
    reporter.attempts = 2
    reporter.store_client = httpx.Client(transport=FlakyStore(failures=99, status=503))
    model = tmp_path / "model.safetensors"
    model.write_bytes(DATA)
    with pytest.raises(ConnectionError, match="object storage unreachable after 2 tries"):
        reporter.upload_artifact(job_id, 1, model, "model")
    assert bucket_keys(s3_server) == []
