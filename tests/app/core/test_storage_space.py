"""A full or nearly full disk through the ASGI app: /readyz says which storage is low, new work is
refused with 507 while work already taken may still write, and a write that hits a full disk (at
the OS, in SQLite) is a 507 that leaves no partial file, never a 500.

Faults are injected at the boundary: ``shutil.disk_usage`` reports little free space, a file write
raises ENOSPC, SQLite's page limit makes the database full for real.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from taas.app.artifacts import storage as artifact_storage
from taas.app.core.config import get_settings
from taas.app.core.db import get_engine, session_scope
from taas.app.core.storage_space import storage_full_reason
from taas.app.jobs.models import Job
from tests.app.datasets.test_router import npz_bytes
from tests.app.datasets.test_router import stored_files as stored_dataset_files
from tests.app.datasets.test_router import upload as upload_dataset
from tests.app.internal.test_router import (
    claim,
    claimed_job,
    finish,
    stored_files,
    submit,
    upload,
    upload_model,
    write,
)

DiskUsage = namedtuple("DiskUsage", "total used free")
MiB = 1024**2


@pytest.fixture
def low_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, int], None]:
    """Make the filesystem under a folder report only ``free`` bytes free."""
    real_disk_usage = shutil.disk_usage
    low: dict[Path, int] = {}

    def disk_usage(path: Any) -> Any:
        resolved = Path(path).resolve()
        for root, free in low.items():
            if resolved == root or root in resolved.parents:
                return DiskUsage(100 * MiB, 100 * MiB - free, free)
        return real_disk_usage(path)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)

    def set_low(folder: Path, free: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        low[folder.resolve()] = free

    return set_low


def artifact_dir() -> Path:
    return get_settings().resolved_artifact_dir


def test_readyz_reports_each_storage_location(api: TestClient) -> None:
    response = api.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["storage"] == "ok"
    names = {location["name"]: location for location in body["storage_locations"]}
    assert set(names) == {"database", "artifacts", "datasets"}
    assert all(location["status"] == "ok" for location in names.values())
    assert names["artifacts"]["min_free_bytes"] == get_settings().min_free_bytes
    assert names["artifacts"]["free_bytes"] >= get_settings().min_free_bytes


def test_readyz_is_degraded_naming_the_low_location_its_free_bytes_and_the_threshold(
    api: TestClient, low_disk: Callable[[Path, int], None]
) -> None:
    low_disk(artifact_dir(), 5 * MiB)
    response = api.get("/readyz")
    assert response.status_code == 200  # still in rotation: running jobs must finish
    body = response.json()
    assert (body["status"], body["storage"], body["database"], body["broker"]) == (
        "degraded",
        "low",
        "ok",
        "ok",
    )
    names = {location["name"]: location for location in body["storage_locations"]}
    assert names["artifacts"] == {
        "name": "artifacts",
        "status": "low",
        "free_bytes": 5 * MiB,
        "min_free_bytes": 1024**3,
    }
    assert names["database"]["status"] == "ok"


def test_new_jobs_uploads_and_claims_are_507_while_storage_is_low(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    low_disk: Callable[[Path, int], None],
) -> None:
    queued = submit(api, auth)
    low_disk(artifact_dir(), 5 * MiB)

    refused = api.post("/v1/jobs", json={"dataset": "synthetic"}, headers=auth)
    assert refused.status_code == 507
    assert refused.json()["detail"] == (
        "new job refused: artifacts storage has 5.0 MiB free, below the 1024.0 MiB that "
        "TAAS_MIN_FREE_BYTES asks for. Free some space and retry"
    )
    status, body = upload_dataset(api, auth, npz_bytes())
    assert status == 507
    assert "dataset upload refused: artifacts storage" in str(body["detail"])
    assert stored_dataset_files() == []
    refused_claim = claim(api, worker_auth, queued)
    assert refused_claim.status_code == 507
    assert api.get(f"/v1/jobs/{queued}", headers=auth).json()["status"] == "queued"
    # Still 401 first: a caller without a key learns nothing about the server's disks.
    assert api.post("/v1/jobs", json={"dataset": "synthetic"}).status_code == 401


def test_locations_low_on_one_filesystem_are_named_in_one_reason(
    api: TestClient, auth: dict[str, str], low_disk: Callable[[Path, int], None]
) -> None:
    settings = get_settings()
    for folder in (settings.home, settings.resolved_artifact_dir, settings.resolved_dataset_dir):
        low_disk(folder, 3 * MiB)  # TAAS_HOME holds the SQLite database too

    refused = api.post("/v1/jobs", json={"dataset": "synthetic"}, headers=auth)
    assert refused.status_code == 507
    assert refused.json()["detail"] == (
        "new job refused: database, artifacts and datasets storage has 3.0 MiB free, below the "
        "1024.0 MiB that TAAS_MIN_FREE_BYTES asks for. Free some space and retry"
    )


def test_running_jobs_still_write_and_finish_while_storage_is_low(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    low_disk: Callable[[Path, int], None],
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    low_disk(artifact_dir(), 5 * MiB)
    metric = {"epoch": 1, "train_loss": 0.5}
    assert write(api, worker_auth, job_id, "metrics", metric).status_code == 200
    upload_model(api, worker_auth, job_id)
    assert finish(api, worker_auth, job_id, status="succeeded").status_code == 200
    assert api.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "succeeded"


def test_an_upload_that_fills_the_disk_is_507_and_leaves_no_partial_file(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = claimed_job(api, auth, worker_auth)

    real_write_batch, disk_is_full = artifact_storage._write_batch, [True]

    def write_until_full(file: Any, digest: Any, batch: bytearray) -> None:
        if not disk_is_full[0]:
            return real_write_batch(file, digest, batch)
        file.write(batch[:1000])  # some bytes made it to the partial file
        file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifact_storage, "_write_batch", write_until_full)
    response = upload(
        api, worker_auth, job_id, "checkpoint-epoch1.pt", b"x" * 4096, kind="checkpoint"
    )
    assert response.status_code == 507
    assert response.json()["detail"] == (
        "storage full: No space left on device; the write was not kept. Free some space and retry"
    )
    assert stored_files(job_id) == []  # the .partial file went with the refusal
    assert api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"] == []

    disk_is_full[0] = False  # space came back: the same upload goes through
    again = upload(api, worker_auth, job_id, "checkpoint-epoch1.pt", b"x" * 4096, kind="checkpoint")
    assert again.status_code == 200, again.text
    assert [path.stat().st_size for path in stored_files(job_id)] == [4096]


def test_a_dataset_upload_that_fills_the_disk_is_507_and_leaves_nothing(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from taas.app.datasets.ingest import canonical

    def disk_full(*_args: Any, **_kwargs: Any) -> None:
        # safetensors reports a full disk from Rust, as text, not as an OSError.
        raise RuntimeError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(canonical.safetensors.numpy, "save_file", disk_full)
    status, body = upload_dataset(api, auth, npz_bytes())
    assert status == 507, body
    assert body["detail"] == "storage full: no space left on device"
    assert stored_dataset_files() == []
    assert api.get("/v1/datasets", headers=auth).json()["items"][-1]["id"] == "synthetic"


@pytest.fixture
def full_database(taas_home: Path) -> Iterator[Callable[[bool], None]]:
    """Every write SQLite is asked for fails as it does on a full disk (SQLITE_FULL); reads
    still work. The real thing, on a small filesystem, is in tests/e2e/test_disk_full.py."""
    engine = get_engine()
    state = {"full": False}

    @event.listens_for(engine, "before_cursor_execute")
    def refuse_writes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if state["full"] and statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
            raise error

    def set_full(full: bool) -> None:
        state["full"] = full

    yield set_full
    event.remove(engine, "before_cursor_execute", refuse_writes)


def test_a_finish_the_full_database_cannot_take_is_507_and_is_taken_once_space_returns(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    full_database: Callable[[bool], None],
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    full_database(True)
    body = {"status": "failed", "error_type": "internal", "error_message": "x" * 3000}
    response = finish(api, worker_auth, job_id, **body)
    assert response.status_code == 507, response.text
    assert response.json()["detail"] == (
        "storage full: the database or its disk is full; the write was not kept. "
        "Free some space and retry"
    )
    with session_scope() as session:
        assert session.scalar(select(Job.status).where(Job.id == job_id)) == "running"

    full_database(False)
    assert finish(api, worker_auth, job_id, **body).status_code == 200
    assert api.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "failed"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "storage full: No space left on device"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "storage full: Disk quota exceeded"),
        (OSError(errno.EACCES, "Permission denied"), None),
        (
            RuntimeError("I/O error: No space left on device (os error 28)"),
            "storage full: no space left on device",
        ),
        (RuntimeError("os error 28, elsewhere"), None),
        (ValueError("plain"), None),
    ],
)
def test_storage_full_is_recognised_by_errno_not_by_guessing(
    error: BaseException, reason: str | None
) -> None:
    assert storage_full_reason(error) == reason


def test_a_wrapped_sqlite_full_error_is_recognised() -> None:
    inner = sqlite3.OperationalError("database or disk is full")
    inner.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    wrapped = OperationalError("INSERT ...", {}, inner)
    assert storage_full_reason(wrapped) == "storage full: the database or its disk is full"
    outer = RuntimeError("commit failed")
    outer.__cause__ = wrapped
    assert storage_full_reason(outer) == "storage full: the database or its disk is full"
