"""Helpers for the artifact tests: a claimed job to upload for, uploads as a worker, what lies on
disk, and a real `taas api` process (SQLite) for what only a real server shows."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi.testclient import TestClient

from tests.conftest import TINY_SYNTHETIC, WORKER_TOKEN
from tests.e2e.conftest import Deployment
from tests.e2e.processes import Process, base_env, free_port, taas_command, wait_until_healthy

INTERNAL = "/internal/v1/jobs"


def claimed_job(
    client: TestClient | httpx.Client, auth: dict[str, str], worker_auth: dict[str, str]
) -> str:
    """A tiny synthetic job, submitted by the tenant and claimed as attempt 1 by a worker."""
    submitted = client.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth)
    assert submitted.status_code == 201, submitted.text
    job_id = str(submitted.json()["id"])
    claimed = client.post(f"{INTERNAL}/{job_id}/claim", json={"worker": "w1"}, headers=worker_auth)
    assert claimed.status_code == 200, claimed.text
    return job_id


def segment(name: str) -> str:
    """``name`` as one path segment that the server decodes back to exactly ``name``."""
    quoted = quote(name, safe="")
    if quoted in {".", ".."}:
        quoted = quoted.replace(".", "%2E")  # or the client resolves it as a dot segment
    return quoted


def upload_url(job_id: str, name: str, attempt: int = 1) -> str:
    return f"{INTERNAL}/{job_id}/attempts/{attempt}/artifacts/{segment(name)}"


def upload(
    client: TestClient | httpx.Client,
    worker_auth: dict[str, str],
    job_id: str,
    name: str,
    data: bytes,
    *,
    attempt: int = 1,
    sha256: str | None = None,
    kind: str = "model",
) -> httpx.Response:
    digest = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
    return client.put(
        upload_url(job_id, name, attempt),
        content=data,
        params={"kind": kind},
        headers={**worker_auth, "X-Content-SHA256": digest},
    )


def artifact_rows(
    client: TestClient | httpx.Client, auth: dict[str, str], job_id: str
) -> list[dict[str, object]]:
    response = client.get(f"/v1/jobs/{job_id}/artifacts", headers=auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (none if it does not exist), hidden temporary files included."""
    if not folder.exists():
        return []
    return sorted(path for path in folder.rglob("*") if path.is_file())


def start_sqlite_api(workdir: Path, **extra_env: str) -> Deployment:
    """`taas migrate`, then `taas api` (the production entry point) on SQLite, no worker."""
    home, port = workdir / "home", free_port()
    home.mkdir(parents=True)
    api_url = f"http://127.0.0.1:{port}"
    env = base_env(home, TAAS_WORKER_TOKEN=WORKER_TOKEN, TAAS_API_URL=api_url, **extra_env)
    Process("migrate", taas_command("migrate"), env, workdir).run()
    api = Process("api", taas_command("api", "--port", str(port)), env, workdir).start()
    try:
        wait_until_healthy(api_url, [api])
    except BaseException:
        api.stop()
        raise
    return Deployment("sqlite-api", api_url, home, env, [api])
