"""`taas serve` with TAAS_HOME on a really small filesystem (a tmpfs this test mounts): a CNN job's
checkpoints fill it; the writes that do not fit are refused (507) and skipped, /readyz says which
storage is low, new jobs are refused with 507, the job still ends instead of staying `running`,
and once space is freed the server takes new work again.

Mounting needs root (the CI runs as root); elsewhere the test is skipped, never in CI.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Deployment, start_embedded

MiB = 1024**2
DISK_MIB = 24
MIN_FREE = 6 * MiB
# Free space left to the job: two checkpoints (~3.6 MiB each: weights and AdamW moments of a
# 300k-parameter CNN) fit, with a local copy of a third; a third at the API does not.
ROOM_FOR_THE_JOB = 12 * MiB
# Storage is low for a moment while the first checkpoint goes up (the worker's copy and the
# API's both on disk), then from the second checkpoint on until the job ends and its checkpoints
# go: ten epochs keep it low long enough for the requests below, on a busy machine too.
FILLING_JOB = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 2048, "test_size": 256, "shape": [1, 28, 28]},
    "model": {"arch": "cnn", "channels": [8, 16], "hidden_size": 384},
    "training": {"epochs": 10, "batch_size": 128},
}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs", str(mount_point)]
    mounted = subprocess.run(command, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to mount a tmpfs: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a small filesystem here (needs root): {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.steps: list[str] = []

    def note(self, step: str) -> None:
        self.steps.append(f"{time.monotonic() - self.started:6.1f} s  {step}")
        print(self.steps[-1], flush=True)


def wait_for(condition: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def fill_to(path: Path, folder: Path, free_bytes: int) -> None:
    """A ballast file that leaves ``free_bytes`` free on the filesystem of ``folder``."""
    excess = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize - free_bytes
    with path.open("wb") as file:
        file.write(b"\0" * max(excess, 0))


def test_a_full_disk_is_said_early_and_nothing_is_stuck(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline = Timeline()
    home = small_disk / "home"
    deployment = start_embedded(
        tmp_path,
        TAAS_HOME=str(home),
        TAAS_MIN_FREE_BYTES=str(MIN_FREE),
        TAAS_STORAGE_WAIT_SECONDS="10",
        TAAS_RECONCILE_SECONDS="1",
    )
    try:
        run_the_scenario(deployment, home, small_disk, timeline)
    except BaseException:
        print(deployment.logs())
        raise
    finally:
        deployment.stop()
        timeline.note("server stopped")
        with capsys.disabled():
            print("\ndisk-full timeline:\n" + "\n".join(timeline.steps))


def run_the_scenario(deployment: Deployment, home: Path, disk: Path, timeline: Timeline) -> None:
    key = (home / "api_key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=deployment.api_url, headers=headers, timeout=30) as api:
        fill_and_free(api, home, disk, timeline)


def fill_and_free(api: httpx.Client, home: Path, disk: Path, timeline: Timeline) -> None:
    timeline.note(f"taas serve ready, TAAS_HOME on a {DISK_MIB} MiB tmpfs")
    fill_to(disk / "ballast", disk, ROOM_FOR_THE_JOB)
    timeline.note(f"ballast written: {free_mib(disk)} MiB free")
    assert api.get("/readyz").json()["status"] == "ok"

    submitted = api.post("/v1/jobs", json=FILLING_JOB)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    timeline.note(f"CNN job {job_id} submitted")

    low = wait_for(
        lambda: checkpoints_kept(api, job_id) == 2 and storage_low(api),
        "two checkpoints kept and /readyz to say storage is low",
        60,
    )
    timeline.note(f"/readyz degraded, storage low: {low}")
    refused = api.post("/v1/jobs", json=FILLING_JOB)
    assert refused.status_code == 507, refused.text
    assert "new job refused: " in refused.json()["detail"]
    assert "below the 6.0 MiB that TAAS_MIN_FREE_BYTES asks for" in refused.json()["detail"]
    timeline.note(f"POST /v1/jobs 507: {refused.json()['detail']}")

    ended = wait_for(lambda: terminal(api, job_id), "the job to end", 120)
    timeline.note(f"job ended {ended['status']}, epoch {ended['progress']['epoch']}")
    messages = [event["message"] for event in api.get(f"/v1/jobs/{job_id}/events").json()["items"]]
    skipped = [message for message in messages if "not kept: storage full" in message]
    assert skipped, messages  # the disk did fill: a checkpoint write was refused
    timeline.note(f"{len(skipped)} checkpoint(s) skipped: {skipped[0]}")
    assert ended["status"] in ("succeeded", "failed"), ended
    if ended["status"] == "failed":
        assert ended["error"]["type"] == "infra"
        assert "storage full" in ended["error"]["message"]
    # Each checkpoint file goes as soon as it is uploaded; the attempt's (empty) folder goes
    # when the worker has reported the end, a moment after the API shows it.
    scratch = home / "checkpoints"
    files = [path for path in scratch.rglob("*") if path.is_file()]
    assert not files, f"the worker left scratch files behind: {files}"
    wait_for(lambda: not list(scratch.iterdir()), "the attempt's scratch folder to go", 15)

    (disk / "ballast").unlink()
    timeline.note(f"ballast deleted: {free_mib(disk)} MiB free")
    wait_for(lambda: api.get("/readyz").json()["status"] == "ok", "/readyz to be ok again", 15)
    timeline.note("/readyz ok again")
    again = api.post("/v1/jobs", json={**FILLING_JOB, "training": {"epochs": 1}})
    assert again.status_code == 201, again.text
    second = wait_for(lambda: terminal(api, again.json()["id"]), "the second job to end", 60)
    assert second["status"] == "succeeded", second
    timeline.note("a new job was accepted and succeeded")


def free_mib(disk: Path) -> str:
    stats = os.statvfs(disk)
    return f"{stats.f_bavail * stats.f_frsize / MiB:.1f}"


def storage_low(api: httpx.Client) -> str | None:
    response = api.get("/readyz")
    body = response.json()
    if response.status_code != 200 or body["status"] != "degraded" or body["storage"] != "low":
        return None
    low = [item for item in body["storage_locations"] if item["status"] == "low"]
    return ", ".join(f"{item['name']} {item['free_bytes'] / MiB:.1f} MiB free" for item in low)


def checkpoints_kept(api: httpx.Client, job_id: str) -> int:
    items = api.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
    return sum(item["kind"] == "checkpoint" for item in items)


def terminal(api: httpx.Client, job_id: str) -> dict[str, Any] | None:
    job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
    return job if job["status"] in ("succeeded", "failed", "cancelled") else None
