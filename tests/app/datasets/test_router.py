"""Dataset routes through the ASGI app: upload, dedupe, list, tenant isolation, delete rules, and
nothing left behind by a refused upload."""

from __future__ import annotations

import hashlib
import io
import stat
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from taas.app.core.config import get_settings
from taas.app.core.db import session_scope
from taas.app.datasets.models import Dataset
from tests.conftest import clear_caches


def npz_bytes(samples: int = 40, classes: int = 3, seed: int = 0, test: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    arrays = {
        "x": rng.integers(0, 256, size=(samples, 8, 8), dtype=np.uint8),
        "y": np.arange(samples, dtype=np.int64) % classes,
    }
    if test:
        arrays["x_test"] = rng.integers(0, 256, size=(10, 8, 8), dtype=np.uint8)
        arrays["y_test"] = np.arange(10, dtype=np.int64) % classes
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def upload(
    api: TestClient,
    auth: dict[str, str],
    content: bytes,
    filename: str = "data.npz",
    **fields: str,
) -> tuple[int, dict[str, object]]:
    response = api.post(
        "/v1/datasets",
        files={"file": (filename, content, "application/octet-stream")},
        data=fields,
        headers=auth,
    )
    body: dict[str, object] = response.json()
    return response.status_code, body


def stored_files() -> list[Path]:
    """Every file under the dataset folder, staging included."""
    root = get_settings().resolved_dataset_dir
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def dataset_rows() -> int:
    with session_scope() as session:
        return session.query(Dataset).count()


@pytest.fixture
def other_auth(make_key: Callable[[str], str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('globex')}"}


def test_upload_stores_a_canonical_dataset_and_lists_it(
    api: TestClient, auth: dict[str, str]
) -> None:
    status, dataset = upload(api, auth, npz_bytes(test=True), name="digits")

    assert status == 201, dataset
    assert str(dataset["id"]).startswith("ds_")
    assert dataset["name"] == "digits"
    assert dataset["kind"] == "uploaded"
    assert dataset["shape"] == [1, 8, 8]
    assert (dataset["num_classes"], dataset["train_size"], dataset["test_size"]) == (3, 40, 10)
    assert dataset["format"] == "npz"
    [path] = stored_files()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == dataset["sha256"]
    listed = api.get("/v1/datasets", headers=auth).json()["items"]
    assert [item["id"] for item in listed][:4] == ["fashion_mnist", "mnist", "cifar10", "synthetic"]
    assert listed[-1] == dataset
    assert api.get(f"/v1/datasets/{dataset['id']}", headers=auth).json() == dataset


def test_the_same_bytes_uploaded_again_return_the_existing_dataset(
    api: TestClient, auth: dict[str, str]
) -> None:
    content = npz_bytes()
    first_status, first = upload(api, auth, content)
    second_status, second = upload(api, auth, content, name="another name")

    assert (first_status, second_status) == (201, 200)
    assert second["id"] == first["id"]
    assert dataset_rows() == 1
    assert len(stored_files()) == 1


def test_built_ins_say_whether_this_server_has_them(api: TestClient, auth: dict[str, str]) -> None:
    items = {item["id"]: item for item in api.get("/v1/datasets", headers=auth).json()["items"]}

    fashion = items["fashion_mnist"]
    assert fashion["shape"] == [1, 28, 28]
    assert fashion["class_names"][0] == "T-shirt/top"
    assert (fashion["train_size"], fashion["test_size"]) == (60000, 10000)
    assert items["synthetic"]["available"] is True
    cifar = items["cifar10"]
    assert cifar["available"] is False  # no data dir with CIFAR-10 in a fresh TAAS_HOME
    assert "TAAS_ALLOW_DOWNLOAD" in cifar["reason"]
    assert api.get("/v1/datasets/mnist", headers=auth).json()["id"] == "mnist"


def test_another_tenants_dataset_is_not_found_on_every_route(
    api: TestClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    _, dataset = upload(api, auth, npz_bytes())
    path = f"/v1/datasets/{dataset['id']}"

    assert api.get(path, headers=other_auth).status_code == 404
    assert api.delete(path, headers=other_auth).status_code == 404
    listed = api.get("/v1/datasets", headers=other_auth).json()["items"]
    assert dataset["id"] not in [item["id"] for item in listed]
    job = api.post("/v1/jobs", json={"dataset": dataset["id"]}, headers=other_auth)
    assert job.status_code == 422
    assert "unknown dataset" in job.text
    # The same bytes from the other tenant make that tenant's own dataset.
    status, theirs = upload(api, other_auth, npz_bytes())
    assert status == 201
    assert theirs["id"] != dataset["id"]
    assert api.get(path, headers=auth).status_code == 200


def test_a_job_on_an_upload_is_validated_against_its_shape(
    api: TestClient, auth: dict[str, str]
) -> None:
    _, dataset = upload(api, auth, npz_bytes())

    job = api.post(
        "/v1/jobs",
        json={"dataset": dataset["id"], "model": {"arch": "mlp", "hidden_sizes": [16]}},
        headers=auth,
    )
    assert job.status_code == 201, job.text
    assert job.json()["parameter_count"] == 64 * 16 + 16 + 16 * 3 + 3
    too_deep = {"arch": "cnn", "channels": [8, 8, 8, 8]}  # 8x8 pooled four times is nothing
    refused = api.post("/v1/jobs", json={"dataset": dataset["id"], "model": too_deep}, headers=auth)
    assert refused.status_code == 422
    assert "model.channels" in refused.text


def test_a_dataset_in_use_cannot_be_deleted_until_its_jobs_end(
    api: TestClient, auth: dict[str, str]
) -> None:
    _, dataset = upload(api, auth, npz_bytes())
    job = api.post("/v1/jobs", json={"dataset": dataset["id"]}, headers=auth).json()
    path = f"/v1/datasets/{dataset['id']}"

    refused = api.delete(path, headers=auth)
    assert refused.status_code == 409
    assert job["id"] in refused.json()["detail"]
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).status_code == 202
    assert api.delete(path, headers=auth).status_code == 204
    assert api.get(path, headers=auth).status_code == 404
    assert stored_files() == []
    assert dataset_rows() == 0


def test_built_ins_cannot_be_deleted(api: TestClient, auth: dict[str, str]) -> None:
    response = api.delete("/v1/datasets/fashion_mnist", headers=auth)

    assert response.status_code == 409
    assert "built-in" in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "fields", "status", "phrase"),
    [
        (b"\x00\x01binary garbage\xff" * 10, {}, 415, "format"),
        (npz_bytes(classes=1), {}, 422, "class"),
        (b"a,b,label\n1,2,0\n3,4,x\n", {"filename": "data.csv"}, 422, "label"),
        (npz_bytes(), {"colour": "red"}, 422, "colour"),
        (npz_bytes(), {"image_size": "big"}, 422, "image_size"),
        (npz_bytes(), {"name": "n" * 101}, 422, "name"),
    ],
    ids=["unknown-format", "one-class", "csv-bad-label", "unknown-field", "bad-size", "long-name"],
)
def test_a_refused_upload_names_the_problem_and_leaves_nothing(
    api: TestClient,
    auth: dict[str, str],
    content: bytes,
    fields: dict[str, str],
    status: int,
    phrase: str,
) -> None:
    got, body = upload(api, auth, content, **fields)

    assert got == status, body
    assert phrase in str(body["detail"])
    assert dataset_rows() == 0
    assert stored_files() == []


def test_non_multipart_bodies_and_missing_files_are_refused(
    api: TestClient, auth: dict[str, str]
) -> None:
    as_json = api.post("/v1/datasets", json={"file": "x"}, headers=auth)
    assert as_json.status_code == 415
    assert "multipart/form-data" in as_json.json()["detail"]
    no_file = api.post(
        "/v1/datasets", data={"name": "x"}, files={"other": ("a", b"b")}, headers=auth
    )
    assert no_file.status_code == 422
    text_file = api.post(
        "/v1/datasets",
        headers={**auth, "Content-Type": "multipart/form-data; boundary=B"},
        content=b'--B\r\nContent-Disposition: form-data; name="file"\r\n\r\n'
        b"not a file\r\n--B--\r\n",
    )
    assert text_file.status_code == 422
    assert "file" in str(text_file.json()["detail"])
    assert dataset_rows() == 0


@pytest.fixture
def small_upload_cap(taas_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("TAAS_MAX_UPLOAD_BYTES", "20000")
    clear_caches()
    from taas.app.main import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


def test_an_upload_over_the_cap_is_413_and_leaves_nothing(
    small_upload_cap: TestClient, auth: dict[str, str]
) -> None:
    big = npz_bytes(samples=400)  # 400 x 64 bytes of pixels, well over 20,000 bytes
    assert len(big) > 20000

    status, body = upload(small_upload_cap, auth, big)

    assert status == 413
    assert "20000" in str(body["detail"])
    assert dataset_rows() == 0
    assert stored_files() == []


def test_workers_fetch_the_dataset_of_the_attempt_they_run(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    _, dataset = upload(api, auth, npz_bytes())
    job = api.post("/v1/jobs", json={"dataset": dataset["id"]}, headers=auth).json()
    claim = api.post(
        f"/internal/v1/jobs/{job['id']}/claim", json={"worker": "w1"}, headers=worker_auth
    ).json()

    assert claim["dataset"] == {
        "id": dataset["id"],
        "name": dataset["name"],  # what model.json calls the dataset
        "sha256": dataset["sha256"],
        "size_bytes": dataset["size_bytes"],
    }
    fetched = api.get(f"/internal/v1/jobs/{job['id']}/attempts/1/dataset", headers=worker_auth)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == dataset["sha256"]
    stale = api.get(f"/internal/v1/jobs/{job['id']}/attempts/2/dataset", headers=worker_auth)
    assert stale.status_code == 409
    tenant = api.get(f"/internal/v1/jobs/{job['id']}/attempts/1/dataset", headers=auth)
    assert tenant.status_code == 401


def test_built_in_jobs_claim_without_a_dataset_to_fetch(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job = api.post("/v1/jobs", json={"dataset": "fashion_mnist"}, headers=auth).json()
    claim = api.post(
        f"/internal/v1/jobs/{job['id']}/claim", json={"worker": "w1"}, headers=worker_auth
    ).json()

    assert claim["dataset"] is None
    nothing = api.get(f"/internal/v1/jobs/{job['id']}/attempts/1/dataset", headers=worker_auth)
    assert nothing.status_code == 404


def _npz(**arrays: object) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _png(side: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side), 100).save(buffer, "PNG")
    return buffer.getvalue()


def _class_pngs() -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    return [(f"{label}/{index}.png", _png()) for label in ("cat", "dog") for index in range(6)]


def _symlink() -> zipfile.ZipInfo:
    link = zipfile.ZipInfo("cat/link.png")
    link.create_system = 3  # Unix: external_attr holds st_mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return link


def _pickled() -> bytes:
    objects = np.empty(12, dtype=object)
    objects[:] = [{"pixels": index} for index in range(12)]
    buffer = io.BytesIO()
    np.savez(buffer, x=objects, y=np.arange(12) % 2, allow_pickle=True)
    return buffer.getvalue()


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()  # 3 MB of zeros deflate to a few kB: a ratio far over the cap of 200
    np.savez_compressed(buffer, x=np.zeros((12, 250_000), np.uint8), y=np.arange(12) % 2)
    return buffer.getvalue()


LABELS = np.arange(40) % 4
IMAGES = np.zeros((40, 8, 8), np.uint8)
CRAFTED = {
    "mismatched-lengths": ("d.npz", _npz(x=IMAGES, y=LABELS[:39]), 422, "39 labels"),
    "wrong-shape": ("d.npz", _npz(x=np.zeros((40, 2, 3, 4, 5)), y=LABELS), 422, "x"),
    "float-labels": ("d.npz", _npz(x=IMAGES, y=LABELS.astype(float)), 422, "integers"),
    "negative-labels": ("d.npz", _npz(x=IMAGES, y=LABELS - 1), 422, ">= 0"),
    "nan": ("d.npz", _npz(x=np.full((40, 3), np.nan), y=LABELS), 422, "NaN"),
    "inf": ("d.npz", _npz(x=np.full((40, 3), np.inf), y=LABELS), 422, "infinite"),
    "too-few-samples": ("d.npz", _npz(x=IMAGES[:5], y=LABELS[:5]), 422, "at least"),
    "pickled-objects": ("d.npz", _pickled(), 422, "pickled"),
    "truncated": ("d.npz", _npz(x=IMAGES, y=LABELS)[:300], 422, "corrupt or truncated"),
    "zip-slip-dotdot": ("d.zip", _zip([*_class_pngs(), ("../evil.png", _png())]), 422, ".."),
    "zip-slip-absolute": ("d.zip", _zip([*_class_pngs(), ("/etc/x.png", _png())]), 422, "outside"),
    "zip-symlink": ("d.zip", _zip([*_class_pngs(), (_symlink(), b"/etc/passwd")]), 422, "link"),
    "zip-bomb": ("d.npz", _zip_bomb(), 422, "zip bomb"),
    "image-bomb": ("d.zip", _zip([*_class_pngs(), ("cat/big.png", _png(5000))]), 422, "pixels"),
    "undecodable-image": (
        "d.zip",
        _zip([*_class_pngs(), ("cat/x.png", b"\x89PNG junk")]),
        422,
        "image",
    ),
    "corrupt-zip": ("d.zip", b"PK\x03\x04" + b"\x00" * 50, 422, "zip"),
}


@pytest.mark.parametrize(("filename", "content", "status", "phrase"), CRAFTED.values(), ids=CRAFTED)
def test_each_crafted_bad_file_is_refused_over_http_and_leaves_nothing(
    api: TestClient,
    auth: dict[str, str],
    filename: str,
    content: bytes,
    status: int,
    phrase: str,
) -> None:
    got, body = upload(api, auth, content, filename)

    assert got == status, body
    assert phrase in str(body["detail"])
    assert dataset_rows() == 0
    assert stored_files() == []


def test_concurrent_uploads_are_converted_one_at_a_time(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each conversion may hold a whole decoded dataset in memory: they must not add up."""
    from taas.app.datasets import service

    real_ingest, lock = service.ingest, threading.Lock()
    converting, most_at_once = 0, 0

    def watched_ingest(*args: Any, **kwargs: Any) -> Any:
        nonlocal converting, most_at_once
        with lock:
            converting += 1
            most_at_once = max(most_at_once, converting)
        try:
            time.sleep(0.2)  # long enough for the other uploads to arrive meanwhile
            return real_ingest(*args, **kwargs)
        finally:
            with lock:
                converting -= 1

    monkeypatch.setattr(service, "ingest", watched_ingest)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda seed: upload(api, auth, npz_bytes(seed=seed)), range(4)))

    assert [status for status, _ in results] == [201] * 4
    assert most_at_once == 1
    assert dataset_rows() == 4
