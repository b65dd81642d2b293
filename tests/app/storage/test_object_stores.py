"""The two backends behind one interface, and what only the S3 one does (ranges, presigned
uploads, unfinished uploads), against a real S3 endpoint."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import httpx
import pytest

from taas.app.core.errors import IntegrityFailure
from taas.app.storage.filesystem import FileObjectStore
from taas.app.storage.objects import (
    PART_BYTES,
    ObjectMissing,
    ObjectStore,
    StorageUnavailable,
    part_count,
)
from taas.app.storage.s3 import S3ObjectStore
from tests.storage_server import S3Server

DATA = random.Random(3).randbytes(300_000)
DIGEST = hashlib.sha256(DATA).hexdigest()
KEY = "artifacts/job_0123456789abcdef01234567/" + "ab" * 16


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "filesystem":
        return FileObjectStore(tmp_path / "artifacts", tmp_path / "datasets")
    s3_url = request.getfixturevalue("s3_url")
    return S3ObjectStore(s3_url, tmp_path / "staging")


def a_file(folder: Path, data: bytes = DATA) -> Path:
    path = folder / "source.bin"
    path.write_bytes(data)
    return path


def test_a_file_put_comes_back_whole_and_is_listed(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file(KEY, a_file(tmp_path), DIGEST)
    info = store.stat(KEY)
    assert info is not None
    assert info.size_bytes == len(DATA)
    store.get_to_file(KEY, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == DATA
    assert [item.key for item in store.list_objects("artifacts/")] == [KEY]
    store.verify(KEY, len(DATA), DIGEST, [DIGEST])


def test_a_deleted_object_is_missing_and_deleting_again_is_fine(
    store: ObjectStore, tmp_path: Path
) -> None:
    store.put_file(KEY, a_file(tmp_path), DIGEST)
    store.delete(KEY)
    store.delete(KEY)
    assert store.stat(KEY) is None
    with pytest.raises(ObjectMissing):
        store.get_to_file(KEY, tmp_path / "back.bin")
    with pytest.raises(ObjectMissing):
        store.read(KEY, None)


def test_deleting_a_job_prefix_deletes_only_that_job(store: ObjectStore, tmp_path: Path) -> None:
    other = "artifacts/job_ffffffffffffffffffffffff/" + "cd" * 16
    store.put_file(KEY, a_file(tmp_path), DIGEST)
    store.put_file(KEY[:-2] + "99", a_file(tmp_path), DIGEST)
    store.put_file(other, a_file(tmp_path), DIGEST)
    assert store.delete_prefix("artifacts/job_0123456789abcdef01234567/") == 2
    assert [item.key for item in store.list_objects("artifacts/")] == [other]


def test_keys_are_only_what_the_server_makes(store: ObjectStore, tmp_path: Path) -> None:
    for key in ["../etc/passwd", "artifacts/../x", "artifacts/.hidden", "other/x", "artifacts/"]:
        with pytest.raises(ValueError, match="not a storage key"):
            store.put_file(key, a_file(tmp_path), DIGEST)


def test_the_s3_store_passes_byte_ranges_on(s3_url: str, tmp_path: Path) -> None:
    store = S3ObjectStore(s3_url, tmp_path)
    store.put_file(KEY, a_file(tmp_path), DIGEST)
    part = store.read(KEY, "bytes=100-199")
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(DATA)}"
    assert b"".join(part.chunks) == DATA[100:200]
    beyond = store.read(KEY, f"bytes={len(DATA) + 10}-")
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_the_s3_store_keeps_each_objects_sha256(s3_url: str, tmp_path: Path) -> None:
    store = S3ObjectStore(s3_url, tmp_path)
    store.put_file(KEY, a_file(tmp_path), DIGEST)
    info = store.stat(KEY)
    assert info is not None
    assert info.sha256 == DIGEST


def put_parts(upload_parts: list[tuple[str, dict[str, str], bytes]]) -> list[str]:
    etags = []
    for url, headers, body in upload_parts:
        response = httpx.put(url, content=body, headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        etags.append(response.headers["etag"])
    return etags


def test_a_presigned_single_put_is_verified_on_completion(s3_url: str, tmp_path: Path) -> None:
    store = S3ObjectStore(s3_url, tmp_path)
    upload = store.start_direct_upload(KEY, [DIGEST], seconds=60)
    assert upload.upload_id is None
    assert len(upload.parts) == 1
    etags = put_parts([(upload.parts[0].url, upload.parts[0].headers, DATA)])
    store.complete_direct_upload(KEY, None, etags, [DIGEST])
    store.verify(KEY, len(DATA), DIGEST, [DIGEST])


def test_bytes_that_differ_from_the_declared_sha256_fail_verification(
    s3_url: str, tmp_path: Path
) -> None:
    store = S3ObjectStore(s3_url, tmp_path)
    upload = store.start_direct_upload(KEY, [DIGEST], seconds=60)
    corrupt = DATA[:-1] + bytes([DATA[-1] ^ 1])
    put_parts([(upload.parts[0].url, upload.parts[0].headers, corrupt)])
    with pytest.raises(IntegrityFailure):
        store.verify(KEY, len(DATA), DIGEST, [DIGEST])
    with pytest.raises(IntegrityFailure, match="bytes"):
        store.verify(KEY, len(DATA) + 1, DIGEST, [DIGEST])


def test_a_presigned_multipart_upload_assembles_and_verifies(s3_url: str, tmp_path: Path) -> None:
    store = S3ObjectStore(s3_url, tmp_path)
    data = random.Random(5).randbytes(PART_BYTES + 1000)
    parts = [data[:PART_BYTES], data[PART_BYTES:]]
    part_sha256 = [hashlib.sha256(part).hexdigest() for part in parts]
    assert part_count(len(data)) == 2
    upload = store.start_direct_upload(KEY, part_sha256, seconds=60)
    assert upload.upload_id is not None
    assert [item.key for item in store.unfinished_uploads("artifacts/")] == [KEY]
    etags = put_parts(
        [(part.url, part.headers, body) for part, body in zip(upload.parts, parts, strict=True)]
    )
    store.complete_direct_upload(KEY, upload.upload_id, etags, part_sha256)
    store.verify(KEY, len(data), hashlib.sha256(data).hexdigest(), part_sha256)
    assert list(store.unfinished_uploads("artifacts/")) == []


def test_deleting_a_prefix_aborts_its_unfinished_uploads(
    s3_url: str, s3_server: S3Server, tmp_path: Path
) -> None:
    store = S3ObjectStore(s3_url, tmp_path)
    store.start_direct_upload(KEY, [DIGEST, DIGEST], seconds=60)
    assert len(list(store.unfinished_uploads("artifacts/"))) == 1
    store.delete_prefix("artifacts/job_0123456789abcdef01234567/")
    assert s3_server.keys(s3_url.removeprefix("s3://").split("/")[0]) == []


def test_an_unreachable_store_or_a_missing_bucket_is_unavailable(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing_bucket = S3ObjectStore("s3://no-such-bucket-here/x", tmp_path)
    with pytest.raises(StorageUnavailable, match="bucket"):
        missing_bucket.check()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    unreachable = S3ObjectStore(s3_url, tmp_path)
    with pytest.raises(StorageUnavailable, match="unreachable"):
        unreachable.check()
    with pytest.raises(StorageUnavailable):
        unreachable.stat(KEY)


def test_clients_split_files_into_the_parts_the_server_presigns(tmp_path: Path) -> None:
    from taas.client import PART_BYTES as CLIENT_PART_BYTES
    from taas.client import describe_file

    assert CLIENT_PART_BYTES == PART_BYTES  # the SDK and the worker declare parts of this size
    described = describe_file(a_file(tmp_path))
    assert described == {"size_bytes": len(DATA), "sha256": DIGEST, "part_sha256": [DIGEST]}
