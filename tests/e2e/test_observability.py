"""Metrics and logs of real processes: `taas api --workers 2` adds up both processes' counts,
and a whole run logs JSON lines with their context and never a secret."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from taas.client import Client
from tests.conftest import TINY_SYNTHETIC, redis_database_url
from tests.e2e.conftest import start_production
from tests.e2e.processes import Process, base_env, free_port, taas_command, wait_until_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

HEALTHZ = {"method": "GET", "route": "/healthz", "status": "200"}


def healthz_count(metrics: Any) -> float:
    """GET /healthz answered 200, in metric families (parsed text, or merged files)."""
    return sum(
        sample.value
        for family in metrics
        for sample in family.samples
        if sample.name == "taas_http_requests_total" and sample.labels == HEALTHZ
    )


def healthz_count_by_process(folder: Path) -> dict[str, float]:
    """Each API process's own count, read from its file of counters."""
    return {
        path.stem.split("_")[-1]: healthz_count(MultiProcessCollector.merge([str(path)]))
        for path in folder.glob("counter_*.db")
    }


def test_a_scrape_adds_up_the_requests_of_every_api_process(
    tmp_path: Path, postgres_url: str
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"left by an earlier run")
    home, port = tmp_path / "home", free_port()
    env = base_env(
        home,
        TAAS_ENVIRONMENT="production",
        TAAS_DATABASE_URL=postgres_url,
        TAAS_BROKER_URL=redis_database_url(),
        TAAS_WORKER_TOKEN=secrets.token_urlsafe(32),
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    )
    home.mkdir()
    Process("migrate", taas_command("migrate"), env, tmp_path).run()
    command = taas_command("api", "--port", str(port), "--workers", "2")
    api = Process("api", command, env, tmp_path).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, [api])
        assert not (folder / "counter_999999.db").exists()
        # Each request on a new connection, which either process may accept: go on until
        # both have answered some (almost always within the first batch).
        sent = 0
        while sent < 600 and len(healthz_count_by_process(folder)) < 2:
            for _ in range(30):
                assert httpx.get(f"{url}/healthz").status_code == 200
            sent += 30
        by_process = healthz_count_by_process(folder)
        assert len(by_process) == 2, by_process
        assert all(count > 0 for count in by_process.values()), by_process
        for _ in range(4):  # whichever process answers the scrape counts all of them
            text = httpx.get(f"{url}/metrics").text
            assert healthz_count(text_string_to_metric_families(text)) == sent
    finally:
        api.stop()
    assert "Traceback" not in api.log(), api.log()


def with_password(database_url: str) -> tuple[str, str]:
    """The URL with a password (the test servers trust local connections, so any will do)."""
    url = make_url(database_url)
    if url.password:
        return database_url, str(url.password)
    password = f"pw-{secrets.token_hex(12)}"
    return url.set(password=password).render_as_string(hide_password=False), password


def json_lines(log: str, name: str) -> list[dict[str, Any]]:
    lines = []
    for text in log.splitlines():
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError:
            raise AssertionError(f"{name}: not a JSON line: {text!r}") from None
        assert {"time", "level", "logger", "message"} <= set(line), text
        lines.append(line)
    return lines


def test_a_whole_run_logs_json_lines_with_context_and_no_secrets(
    tmp_path: Path, postgres_url: str
) -> None:
    database_url, password = with_password(postgres_url)
    deployment = start_production(tmp_path, database_url, TAAS_LOG_FORMAT="json")
    try:
        key = deployment.create_key("acme")
        headers = {"Authorization": f"Bearer {key}", "X-Request-ID": "e2e-submit-1"}
        submitted = httpx.post(
            f"{deployment.api_url}/v1/jobs", json=TINY_SYNTHETIC, headers=headers
        )
        assert submitted.status_code == 201, submitted.text
        assert submitted.headers["x-request-id"] == "e2e-submit-1"
        job_id = submitted.json()["id"]
        with Client(deployment.api_url, key) as client:
            assert client.wait(job_id, timeout=120)["status"] == "succeeded", deployment.logs()
            client.download(job_id, tmp_path / "model")
    finally:
        deployment.stop()
    logs = {process.name: process.log() for process in deployment.processes}

    api = json_lines(logs["api"], "api")
    (access,) = [line for line in api if line.get("request_id") == "e2e-submit-1"]
    assert access["logger"] == "uvicorn.access"
    assert access["tenant"] == "acme"
    assert access["status"] == 201
    finishes = [line for line in api if "/finish" in str(line.get("path"))]
    assert finishes[0]["job_id"] == job_id
    assert finishes[0]["attempt"] == 1
    worker = json_lines(logs["worker"], "worker")
    assert any(line.get("logger", "").startswith("celery") for line in worker)
    started = [line for line in worker if "attempt 1 started" in line["message"]]
    assert started[0]["job_id"] == job_id
    assert started[0]["attempt"] == 1
    for name, log in logs.items():
        for secret in (key, deployment.env["TAAS_WORKER_TOKEN"], password):
            assert secret not in log, f"{name}'s log holds a secret"
    print(f"\nsample line: {json.dumps(access)}")
