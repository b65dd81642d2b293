"""The worker on a full disk, its own or the API's: a checkpoint that cannot be kept is skipped
with a word in the job's events (training goes on), results and the finish wait for space for a
bounded time, the scratch folder holds nothing between epochs, and no job is taken while the
worker's own disk is low."""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from taas.app.artifacts import storage as artifact_storage
from taas.app.core.config import Settings
from taas.worker import context as context_module
from taas.worker import reporter as reporter_module
from taas.worker import runner
from taas.worker.context import JobContext
from taas.worker.reporter import ApiReporter, StorageFull
from taas.worker.runner import run_job_by_id
from taas.worker.training import train_and_upload
from tests.worker.test_checkpoints import checkpoint_names, reporter, running_job, state
from tests.worker.trainer.fakes import tiny_spec

__all__ = ["reporter"]  # the fixture, shared with the checkpoint tests


def events(api: TestClient, auth: dict[str, str], job_id: str) -> list[str]:
    items = api.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["items"]
    return [str(item["message"]) for item in items]


def test_the_worker_keeps_no_checkpoint_file_once_it_is_uploaded(
    api: TestClient, auth: dict[str, str], reporter: ApiReporter, tmp_path: Path
) -> None:
    job_id = running_job(api, auth, reporter)
    context = JobContext(reporter, job_id, 1, 5, tmp_path / "scratch")
    for epoch in (1, 2):
        context.save_checkpoint(state(epoch))
    assert checkpoint_names(job_id) == ["checkpoint-epoch1.pt", "checkpoint-epoch2.pt"]
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_checkpoint_the_workers_disk_cannot_hold_is_skipped_and_said(
    api: TestClient,
    auth: dict[str, str],
    reporter: ApiReporter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = running_job(api, auth, reporter)
    context = JobContext(reporter, job_id, 1, 5, tmp_path / "scratch")
    context.save_checkpoint(state(1))

    def disk_full(_state: object, file: Any) -> None:
        file.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(context_module.torch, "save", disk_full)
    context.save_checkpoint(state(2))  # does not raise: training goes on

    assert checkpoint_names(job_id) == ["checkpoint-epoch1.pt"]  # the resume point stays
    assert list((tmp_path / "scratch").iterdir()) == []  # the half-written file is gone
    assert events(api, auth, job_id)[-1] == (
        "checkpoint of epoch 2 not kept: storage full: No space left on device on the worker; "
        "training goes on"
    )


def test_a_checkpoint_the_api_has_no_room_for_is_skipped_at_once(
    api: TestClient,
    auth: dict[str, str],
    reporter: ApiReporter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = running_job(api, auth, reporter)
    context = JobContext(reporter, job_id, 1, 5, tmp_path / "scratch")

    def api_disk_full(*_args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifact_storage, "_write_batch", api_disk_full)
    started = time.monotonic()
    context.save_checkpoint(state(1))

    assert time.monotonic() - started < reporter.storage_wait_seconds / 10  # not waited for
    assert checkpoint_names(job_id) == []
    assert list((tmp_path / "scratch").iterdir()) == []
    assert events(api, auth, job_id)[-1].startswith(
        "checkpoint of epoch 1 not kept: storage full on the API (API refused (507): storage "
        "full: No space left on device"
    )


def scripted_reporter(statuses: list[int], wait_seconds: float) -> tuple[ApiReporter, list[str]]:
    """A reporter whose API answers the given statuses in turn (then 200), noting each path."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        status = statuses.pop(0) if statuses else 200
        body = {"detail": "storage full: No space left on device"} if status == 507 else {}
        return httpx.Response(status, json={**body, "cancel": False})

    reporter = ApiReporter("http://api", "t" * 30, attempts=2, storage_wait_seconds=wait_seconds)
    reporter.client = httpx.Client(
        transport=httpx.MockTransport(answer), base_url="http://api/internal/v1/jobs"
    )
    return reporter, seen


@pytest.fixture
def quick_storage_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reporter_module, "STORAGE_RETRY_SECONDS", 0.01)


@pytest.mark.usefixtures("quick_storage_retries")
def test_a_finish_answered_507_is_retried_past_the_transient_tries_until_space_returns() -> None:
    reporter, seen = scripted_reporter([507] * 5, wait_seconds=30)  # more 507s than `attempts`
    reporter.finish("job_" + "a" * 24, 1, {"status": "succeeded"})
    assert len(seen) == 6


@pytest.mark.usefixtures("quick_storage_retries")
def test_a_finish_answered_507_gives_up_after_the_storage_wait() -> None:
    reporter, seen = scripted_reporter([507] * 10_000, wait_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(StorageFull, match="507"):
        reporter.finish("job_" + "a" * 24, 1, {"status": "succeeded"})
    assert 0.3 <= time.monotonic() - started < 5
    assert len(seen) > 2


def test_heartbeats_and_claims_answered_507_are_not_waited_for() -> None:
    reporter, seen = scripted_reporter([507, 507], wait_seconds=600)
    with pytest.raises(StorageFull):
        reporter.heartbeat("job_" + "a" * 24, 1, {"epoch": 0, "fraction": 0.0})
    with pytest.raises(StorageFull):
        reporter.claim("job_" + "a" * 24, "w")
    assert len(seen) == 2


def test_model_files_the_workers_disk_cannot_hold_fail_the_job_as_infra(tmp_path: Path) -> None:
    context = JobContext(
        ApiReporter("http://127.0.0.1:9", "t" * 30), "job_" + "a" * 24, 1, 5, tmp_path
    )

    def load_on_a_full_disk() -> Any:
        raise RuntimeError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    outcome = train_and_upload(tiny_spec(), context, load_on_a_full_disk)
    assert outcome == {
        "status": "failed",
        "error_type": "infra",
        "error_message": "storage full: no space left on device on the worker",
    }


def test_a_worker_whose_disk_is_low_takes_no_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The API URL points nowhere: a claim would fail loudly, so a quiet return shows none was made.
    settings = Settings(
        worker_token="t" * 30, api_url="http://127.0.0.1:9", home=tmp_path, min_free_bytes=2**62
    )
    with caplog.at_level(logging.WARNING, logger="taas.worker.runner"):
        run_job_by_id("job_" + "a" * 24, settings)
    assert (
        "not taking job job_aaaaaaaaaaaaaaaaaaaaaaaa: this worker's scratch folder" in caplog.text
    )
    assert "the job stays queued" in caplog.text


def test_the_scratch_folder_is_removed_even_when_the_finish_cannot_be_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        worker_token="t" * 30, api_url="http://api", home=tmp_path, min_free_bytes=0
    )
    job_id = "job_" + "b" * 24
    job_scratch = settings.worker_scratch_dir / job_id
    left_by_a_killed_worker = job_scratch / "attempt-1"
    left_by_a_killed_worker.mkdir(parents=True)
    (left_by_a_killed_worker / "checkpoint-epoch3.pt").write_bytes(b"x" * 1000)

    def fill_scratch_then_fail(_claim: Any, _reporter: Any, scratch: Path, _settings: Any) -> None:
        scratch.mkdir(parents=True)
        (scratch / "checkpoint-epoch1.pt").write_bytes(b"x" * 1000)
        raise StorageFull(507, "storage full: the database or its disk is full")

    monkeypatch.setattr(runner, "_run_claimed", fill_scratch_then_fail)
    monkeypatch.setattr(runner, "_claim", lambda *_args: SimpleNamespace(job_id=job_id, attempt=2))
    with pytest.raises(StorageFull):
        run_job_by_id(job_id, settings)
    assert not job_scratch.exists()


def test_a_duplicate_message_leaves_the_running_attempts_checkpoint_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers on one host share the scratch root; a second message for a job another worker
    runs (a broker restarted empty, the reconciler sent it again) is refused at the claim and
    must not delete the checkpoint the running attempt is about to upload."""
    settings = Settings(
        worker_token="t" * 30, api_url="http://api", home=tmp_path, min_free_bytes=0
    )
    job_id = "job_" + "c" * 24
    running = settings.worker_scratch_dir / job_id / "attempt-2"
    running.mkdir(parents=True)
    (running / "checkpoint-epoch1.pt").write_bytes(b"x" * 1000)

    monkeypatch.setattr(runner, "_claim", lambda *_args: None)  # the job is not queued any more
    run_job_by_id(job_id, settings)
    assert (running / "checkpoint-epoch1.pt").exists()
