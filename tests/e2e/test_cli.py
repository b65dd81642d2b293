"""The user's CLI against a real `taas serve`, and a clean Ctrl-C of the whole service."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Deployment, start_embedded
from tests.e2e.processes import child_pids, is_alive, taas_command

SMOKE_SPEC = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 600, "test_size": 200, "noise": 1.5},
    "training": {"epochs": 2},
}


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Deployment]:
    deployment = start_embedded(tmp_path)
    yield deployment
    deployment.processes[0].stop()


def taas(deployment: Deployment, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would: key from $TAAS_HOME/api_key, server from TAAS_API_URL."""
    return subprocess.run(
        taas_command(*args),
        cwd=cwd,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_first_start_saves_a_private_api_key(embedded: Deployment) -> None:
    key_file = embedded.home / "api_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("taas_")
    assert key_file.read_text().strip() in embedded.processes[0].log()  # printed once


def test_submit_wait_list_status_download_cancel(embedded: Deployment, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SMOKE_SPEC))

    submitted = taas(embedded, "submit", str(spec_file), "--wait", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.splitlines()[0]
    assert job_id.startswith("job_")
    assert "epoch 2/2" in submitted.stdout  # the progress line
    assert f"{job_id} succeeded" in submitted.stdout
    assert "test_accuracy=" in submitted.stdout

    listed = taas(embedded, "jobs", cwd=tmp_path)
    assert job_id in listed.stdout
    assert "succeeded" in listed.stdout

    status = json.loads(taas(embedded, "status", job_id, cwd=tmp_path).stdout)
    assert status["id"] == job_id
    assert status["status"] == "succeeded"

    downloaded = taas(embedded, "download", job_id, "--out", "model", cwd=tmp_path)
    assert downloaded.returncode == 0, downloaded.stderr
    assert {Path(line).name for line in downloaded.stdout.split()} == {
        "checkpoint-epoch1.pt",  # 2 epochs: a checkpoint after the first
        "metrics.csv",
        "model.json",
        "model.safetensors",
    }
    assert (tmp_path / "model" / "model.safetensors").stat().st_size > 0

    refused = taas(embedded, "cancel", job_id, cwd=tmp_path)
    assert refused.returncode == 1
    assert "409" in refused.stderr
    assert "already succeeded" in refused.stderr


def test_cli_reports_bad_spec_and_missing_key(embedded: Deployment, tmp_path: Path) -> None:
    spec_file = tmp_path / "typo.json"
    spec_file.write_text(json.dumps({"dataset": "synthetic", "training": {"epocs": 3}}))
    rejected = taas(embedded, "submit", str(spec_file), cwd=tmp_path)
    assert rejected.returncode == 1
    assert "422" in rejected.stderr
    assert "epocs" in rejected.stderr

    no_key = {**embedded.env, "TAAS_HOME": str(tmp_path / "elsewhere")}
    result = subprocess.run(
        taas_command("jobs"), cwd=tmp_path, env=no_key, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "no API key" in result.stderr


def test_ctrl_c_stops_api_and_worker_without_orphans(tmp_path: Path) -> None:
    deployment = start_embedded(tmp_path)
    serve = deployment.processes[0]
    assert serve.popen is not None
    workers = child_pids(serve.popen.pid)
    assert len(workers) == 1, "taas serve should run exactly one worker process"
    worker_tree = [workers[0], *child_pids(workers[0])]

    started = time.monotonic()
    serve.popen.send_signal(signal.SIGINT)
    assert serve.popen.wait(timeout=30) == 0
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 10
    while any(is_alive(pid) for pid in worker_tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(is_alive(pid) for pid in worker_tree), "worker processes outlived taas serve"
