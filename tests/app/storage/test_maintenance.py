"""`taas storage gc` removes what no row names (and only that), `taas storage migrate` moves a
filesystem deployment into a bucket: verified, resumable, idempotent."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from taas.app.cli.main import cli
from taas.app.core.config import get_settings
from taas.app.storage.factory import store_for
from taas.app.storage.objects import artifact_key
from tests.app.artifacts import claimed_job, upload
from tests.app.datasets.test_router import npz_bytes
from tests.app.datasets.test_router import upload as upload_dataset
from tests.conftest import clear_caches
from tests.storage_server import S3Server

DATA = b"weights " * 10_000
ORPHAN = "job_000000000000000000000000/" + "0" * 32


def taas(*arguments: str) -> Result:
    return CliRunner().invoke(cli, list(arguments))


def write_object(storage_key: str, tmp_path: Path) -> None:
    source = tmp_path / "object.bin"
    source.write_bytes(DATA)
    store_for(get_settings()).put_file(
        artifact_key(storage_key), source, hashlib.sha256(DATA).hexdigest()
    )


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_gc_deletes_old_orphans_and_unfinished_uploads_and_nothing_else(
    backend: str,
    request: pytest.FixtureRequest,
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if backend == "s3":
        monkeypatch.setenv("TAAS_STORAGE_URL", request.getfixturevalue("s3_url"))
    monkeypatch.setenv("TAAS_STORAGE_ORPHAN_SECONDS", "2")
    clear_caches()
    job_id = claimed_job(api, auth, worker_auth)
    assert upload(api, worker_auth, job_id, "kept.bin", DATA).status_code == 200
    write_object(ORPHAN, tmp_path)  # written, never recorded: a crash in between
    store = store_for(get_settings())
    if backend == "s3":  # a worker that vanished mid-upload
        store.start_direct_upload(artifact_key(ORPHAN[:-1] + "1"), ["0" * 64] * 2, 60)
    time.sleep(2.5)
    young = ORPHAN[:-1] + "2"
    write_object(young, tmp_path)  # as an upload whose row is about to be committed

    dry = taas("storage", "gc", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would delete artifacts/{ORPHAN}" in dry.output
    assert store.stat(artifact_key(ORPHAN)) is not None

    done = taas("storage", "gc")
    assert done.exit_code == 0, done.output
    assert f"deleted artifacts/{ORPHAN}" in done.output
    unfinished = 1 if backend == "s3" else 0
    assert f"1 orphaned objects ({len(DATA)} bytes), {unfinished} unfinished uploads" in done.output
    remaining = sorted(info.key for info in store.list_objects("artifacts/"))
    assert remaining == sorted([artifact_key(young), *_artifact_keys(api, auth, job_id)])
    assert list(store.unfinished_uploads("artifacts/")) == []
    assert api.get(f"/v1/jobs/{job_id}/artifacts/kept.bin", headers=auth).content == DATA


def _artifact_keys(api: TestClient, auth: dict[str, str], job_id: str) -> list[str]:
    from sqlalchemy import select

    from taas.app.artifacts.models import Artifact
    from taas.app.core.db import session_scope

    with session_scope() as session:
        keys = session.scalars(select(Artifact.storage_key).where(Artifact.job_id == job_id))
        return [artifact_key(key) for key in keys]


def test_gc_ends_expired_dataset_uploads(
    s3_home: Path, api: TestClient, auth: dict[str, str], s3_server: S3Server
) -> None:
    begun = api.post(
        "/v1/dataset-uploads",
        json={"filename": "d.npz", "size_bytes": 3, "sha256": "0" * 64, "part_sha256": ["0" * 64]},
        headers=auth,
    )
    assert begun.status_code == 201
    part = begun.json()["parts"][0]
    assert httpx.put(part["url"], content=b"abc", headers=part["headers"]).status_code == 200
    assert taas("storage", "gc").output.endswith("0 expired dataset uploads\n")

    from sqlalchemy import update

    from taas.app.core.db import session_scope, utcnow
    from taas.app.datasets.models import DatasetUpload

    with session_scope() as session:
        session.execute(update(DatasetUpload).values(expires_at=utcnow()))
    swept = taas("storage", "gc")
    assert swept.output.endswith("1 expired dataset uploads\n"), swept.output
    complete = api.post(
        f"/v1/dataset-uploads/{begun.json()['id']}/complete", json={"etags": ["x"]}, headers=auth
    )
    assert complete.status_code == 404
    bucket = get_settings().storage_url.removeprefix("s3://").split("/")[0]  # type: ignore[union-attr]
    assert s3_server.keys(bucket) == []


def test_migrate_moves_a_filesystem_deployment_into_a_bucket(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    s3_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    assert upload(api, worker_auth, job_id, "model.safetensors", DATA).status_code == 200
    status, dataset = upload_dataset(api, auth, npz_bytes())
    assert status == 201

    first = taas("storage", "migrate", "--to", s3_url)
    assert first.exit_code == 0, first.output
    assert f"moved 2 objects ({len(DATA) + int(str(dataset['size_bytes']))} bytes)" in first.output
    assert f"moved datasets/{dataset['id']}.safetensors" in first.output
    again = taas("storage", "migrate", "--to", s3_url)
    assert again.exit_code == 0, again.output
    assert "moved 0 objects (0 bytes); 2 already there" in again.output

    # The same deployment on the bucket (its disk no longer used) serves the same bytes.
    monkeypatch.setenv("TAAS_STORAGE_URL", s3_url)
    monkeypatch.setenv("TAAS_ARTIFACT_DIR", "/nonexistent/artifacts")
    clear_caches()
    from taas.app.main import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as on_bucket:
        answer = on_bucket.get(f"/v1/jobs/{job_id}/artifacts/model.safetensors", headers=auth)
        assert answer.status_code == 200
        assert answer.content == DATA


def test_migrate_refuses_files_that_do_not_match_their_sha256(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    s3_url: str,
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    assert upload(api, worker_auth, job_id, "model.safetensors", DATA).status_code == 200
    [stored] = _artifact_keys(api, auth, job_id)
    path = get_settings().resolved_artifact_dir / stored.removeprefix("artifacts/")
    path.write_bytes(DATA[:-1] + b"!")  # bit rot on the old disk

    result = taas("storage", "migrate", "--to", s3_url)
    assert result.exit_code == 1
    assert f"not moved, its bytes do not match its sha256: {stored}" in result.output
    assert "1 whose bytes do not match their sha256" in result.output


def test_migrate_checks_its_arguments(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert taas("storage", "migrate", "--to", "/var/lib/taas").exit_code == 2
    monkeypatch.setenv("TAAS_STORAGE_URL", s3_url)
    clear_caches()
    result = taas("storage", "migrate", "--to", s3_url)
    assert result.exit_code == 2
    assert "already uses object storage" in result.output
