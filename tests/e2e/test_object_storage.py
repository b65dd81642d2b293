"""Storage that spans hosts, end to end: two `taas api` processes and workers, each with a home
of its own (no shared disk), on PostgreSQL, Redis and a real S3 endpoint.

API A serves downloads through itself; API B redirects them to presigned URLs. The workers
report to the other API than the one the user talks to, and upload and download straight to
and from the store.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from taas.app.auth.service import create_api_key
from taas.app.core import migrate
from taas.app.core.db import make_engine
from taas.client import Client
from tests.app.datasets.test_router import npz_bytes
from tests.conftest import redis_database_url
from tests.e2e.conftest import Deployment
from tests.e2e.processes import base_env, free_port, wait_until_healthy
from tests.e2e.test_reliability import (
    RESUMABLE_JOB,
    SHORT_LEASES,
    assert_succeeded_once,
    messages,
    resumed_after,
    wait_for_epoch,
)
from tests.storage_server import S3Server

pytestmark = pytest.mark.slow

SMALL_JOB: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 256, "test_size": 64, "shape": [1, 12, 12]},
    "training": {"epochs": 2, "batch_size": 32},
}


class Hosts:
    """Deployments that share the database, the broker and the bucket, and nothing else."""

    def __init__(self, root: Path, database_url: str, s3_url: str, s3_server: S3Server) -> None:
        self.root = root
        self.shared = {
            "TAAS_ENVIRONMENT": "production",
            "TAAS_DATABASE_URL": database_url,
            "TAAS_BROKER_URL": redis_database_url(),
            "TAAS_WORKER_TOKEN": secrets.token_urlsafe(32),
            "TAAS_STORAGE_URL": s3_url,
            **SHORT_LEASES,
            **s3_server.environment(),
        }
        self.deployments: list[Deployment] = []
        migrate.upgrade(database_url)

    def api(self, name: str, **settings: str) -> Deployment:
        port = free_port()
        deployment = self._host(name, f"http://127.0.0.1:{port}", settings)
        deployment.start_api(port=port)
        wait_until_healthy(deployment.api_url, deployment.processes)
        return deployment

    def worker(self, name: str, api: Deployment) -> Deployment:
        deployment = self._host(name, api.api_url, {"TAAS_API_URL": api.api_url})
        deployment.start_worker(f"worker-{name}")
        return deployment

    def _host(self, name: str, api_url: str, settings: dict[str, str]) -> Deployment:
        home = self.root / name / "home"
        home.mkdir(parents=True)
        env = base_env(home, **self.shared, **settings)
        deployment = Deployment("production", api_url, home, env, [])
        self.deployments.append(deployment)
        return deployment

    def key(self, tenant: str) -> str:
        engine = make_engine(self.shared["TAAS_DATABASE_URL"])
        try:
            with Session(engine) as session, session.begin():
                return create_api_key(session, tenant)
        finally:
            engine.dispose()

    def logs(self) -> str:
        return "\n".join(deployment.logs() for deployment in self.deployments)

    def stop(self) -> None:
        """Workers first, while the APIs still answer."""

        def is_api(deployment: Deployment) -> bool:
            return not any(process.name.startswith("worker") for process in deployment.processes)

        for deployment in sorted(self.deployments, key=is_api):
            deployment.stop()


@pytest.fixture
def hosts(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_url: str,
    s3_url: str,
    s3_server: S3Server,
) -> Iterator[Hosts]:
    started = Hosts(tmp_path, postgres_url, s3_url, s3_server)
    yield started
    started.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(started.logs())


def bucket_keys(s3_server: S3Server, s3_url: str) -> list[str]:
    return s3_server.keys(s3_url.removeprefix("s3://").split("/")[0])


def test_any_api_serves_any_jobs_files_and_any_worker_resumes_any_job(
    hosts: Hosts, s3_server: S3Server, s3_url: str, tmp_path: Path
) -> None:
    api_a = hosts.api("a")
    api_b = hosts.api("b", TAAS_STORAGE_DOWNLOADS="redirect")
    worker = hosts.worker("w1", api_b)  # reports to B
    key = hosts.key("acme")
    with Client(api_a.api_url, key) as via_a, Client(api_b.api_url, key) as via_b:
        # Submitted through A, trained by a worker that reports to B.
        job = via_a.wait(via_a.submit(SMALL_JOB)["id"], timeout=120, poll_seconds=0.3)
        assert job["status"] == "succeeded", hosts.logs()
        listed = {item["name"]: item["sha256"] for item in via_a.artifacts(job["id"])}
        # Downloaded through both: proxied by A, redirected by B; each checked against sha256.
        for client, folder in ((via_a, "from-a"), (via_b, "from-b")):
            paths = client.download(job["id"], tmp_path / folder)
            digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
            assert digests == listed
        model = "model.safetensors"
        assert (tmp_path / "from-a" / model).read_bytes() == (
            tmp_path / "from-b" / model
        ).read_bytes()

        # A dataset uploaded through B (straight to the store), trained on through A.
        dataset_file = tmp_path / "data.npz"
        dataset_file.write_bytes(npz_bytes(samples=120))
        dataset = via_b.upload_dataset(dataset_file, "spanning", direct=True)
        on_upload = via_a.submit({"dataset": dataset["id"], "training": SMALL_JOB["training"]})
        trained = via_a.wait(on_upload["id"], timeout=120, poll_seconds=0.3)
        assert trained["status"] == "succeeded", hosts.logs()

        # A worker killed mid-job; a new one on another host (empty home) reporting to A
        # resumes from the checkpoint in the bucket.
        long_job = via_a.submit(RESUMABLE_JOB)["id"]
        reported = wait_for_epoch(via_a, long_job, 2, api_a)
        worker.processes[0].kill()
        hosts.worker("w2", api_a)
        final = via_b.wait(long_job, timeout=120, poll_seconds=0.3)
        assert_succeeded_once(via_b, final, api_b)
        assert final["attempt"] == 2
        [after] = resumed_after(via_b, long_job)
        assert after >= reported - 1 >= 1, messages(via_b, long_job)

        # Deleting through B leaves nothing of the job in the bucket.
        assert any(job["id"] in key for key in bucket_keys(s3_server, s3_url))
        via_b.delete(job["id"])
        assert not [key for key in bucket_keys(s3_server, s3_url) if job["id"] in key]
        assert not [key for key in bucket_keys(s3_server, s3_url) if "/uploads/" in key]
