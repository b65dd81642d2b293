"""A real S3 endpoint for the tests: `moto.server` (the `moto[server]` wheel) over HTTP on a
free port, one per test process, with a bucket of its own for each test.

It speaks the S3 protocol that production's stores do (AWS S3, MinIO, Ceph RGW, R2): presigned
URLs, multipart uploads, ranged GETs. It does not check SHA-256 checksums on upload, so the
code's read-back verification is what these tests exercise.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.private_servers import die_with_this_thread, free_port

STARTUP_SECONDS = 30.0
# moto accepts any credentials; these are what every client of the test store sends.
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "taas-test",
    "AWS_SECRET_ACCESS_KEY": "taas-test-secret",
    "AWS_REGION": "us-east-1",
}


class S3Server:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log_path = folder / f"moto-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """What a process needs to reach the store: the standard AWS variables."""
        return {**AWS_ENVIRONMENT, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> S3Server:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_this_thread(signal.SIGTERM),
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the S3 server did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)
        return self

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.endpoint}/moto-api/", timeout=1).status_code < 500
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def client(self) -> object:
        return boto3.client("s3", endpoint_url=self.endpoint, **_credentials())

    def new_bucket(self) -> str:
        name = f"taas-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every object's key in the bucket, and every unfinished upload's (marked)."""
        client = self.client()
        listed = client.list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
        uploads = client.list_multipart_uploads(Bucket=bucket)  # type: ignore[attr-defined]
        return [item["Key"] for item in listed.get("Contents", [])] + [
            f"unfinished upload of {item['Key']}" for item in uploads.get("Uploads", [])
        ]


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENVIRONMENT["AWS_REGION"],
    }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket's URL (with a prefix, as deployments often share a bucket), and this
    process's AWS variables pointing at the test store."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    return f"s3://{s3_server.new_bucket()}/deployment"


@pytest.fixture
def s3_home(taas_home: Path, s3_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """taas_home with its files in object storage."""
    from tests.conftest import clear_caches

    monkeypatch.setenv("TAAS_STORAGE_URL", s3_url)
    clear_caches()
    return taas_home
