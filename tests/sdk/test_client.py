"""taas.Client against a real API server (uvicorn in a thread): typed errors that keep the
status and detail, sha256-checked downloads, wait() with its callback and timeout, where the
key comes from, and what `import taas` installs and loads."""

from __future__ import annotations

import hashlib
import importlib.metadata
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import taas
from taas.app.core.config import get_settings
from tests.app.internal.test_router import MODEL_JSON, WEIGHTS
from tests.app.stream.conftest import start_server
from tests.conftest import TINY_SYNTHETIC, WORKER_TOKEN

INTERNAL = "/internal/v1/jobs"
WORKER = {"Authorization": f"Bearer {WORKER_TOKEN}"}


@pytest.fixture
def url(taas_home: Path) -> Iterator[str]:
    from taas.app.main import create_app

    server, thread, address = start_server(create_app())
    yield address
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture
def client(url: str, make_key: Callable[[str], str]) -> Iterator[taas.Client]:
    with taas.Client(url, make_key("acme")) as sdk:
        yield sdk


def as_worker(url: str, job_id: str, action: str, **kwargs: Any) -> httpx.Response:
    path = "claim" if action == "claim" else f"attempts/1/{action}"
    response = httpx.request(
        "PUT" if "artifacts" in action else "POST",
        f"{url}{INTERNAL}/{job_id}/{path}",
        headers={**WORKER, **kwargs.pop("headers", {})},
        **kwargs,
    )
    assert response.is_success, response.text
    return response


def store_model(url: str, job_id: str) -> None:
    """Claim the job as a worker and upload its two model files."""
    as_worker(url, job_id, "claim", json={"worker": "w1"})
    for name, data, kind in (
        ("model.json", MODEL_JSON, "metadata"),
        ("model.safetensors", WEIGHTS, "model"),
    ):
        digest = {"X-Content-SHA256": hashlib.sha256(data).hexdigest()}
        as_worker(
            url, job_id, f"artifacts/{name}", content=data, params={"kind": kind}, headers=digest
        )


def test_each_refusal_raises_its_own_error_with_status_and_detail(
    url: str, client: taas.Client, make_key: Callable[[str], str]
) -> None:
    with pytest.raises(taas.ValidationError) as invalid:
        client.submit({"dataset": "synthetic", "training": {"epochs": -1}})
    assert invalid.value.status_code == 422
    assert any("epochs" in str(problem["loc"]) for problem in invalid.value.detail)
    assert invalid.value.request_id  # to quote to the service's operators
    # Printed, it reads as a sentence per field, not a list of dicts.
    assert str(invalid.value).startswith("HTTP 422: training.epochs: Input should be")
    with pytest.raises(taas.ValidationError, match="did you mean `fashion_mnist`"):
        client.submit({"dataset": "fashion-mnist"})  # the suggestion comes from the API

    job = client.submit(TINY_SYNTHETIC)
    with taas.Client(url, make_key("globex")) as stranger, pytest.raises(taas.NotFoundError):
        stranger.job(job["id"])
    anonymous = taas.Client(url, "taas_00000000_not-a-real-key")
    with anonymous, pytest.raises(taas.AuthenticationError) as refused:
        anonymous.jobs()
    assert refused.value.status_code == 401
    reader_key = client.create_key("reader", "read")["key"]
    with (
        taas.Client(url, reader_key) as reader,
        pytest.raises(taas.PermissionDeniedError) as denied,
    ):
        reader.cancel(job["id"])
    assert "write" in str(denied.value.detail)
    with pytest.raises(taas.ConflictError):
        client.delete(job["id"])  # still queued
    # Every one of them is an ApiError, and that a TaasError.
    assert issubclass(taas.ConflictError, taas.ApiError)
    assert issubclass(taas.ApiError, taas.TaasError)


def test_a_server_that_is_not_there_is_said_plainly() -> None:
    from tests.private_servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with taas.Client(url, "taas_00000000_key") as nowhere, pytest.raises(taas.TaasError) as error:
        nowhere.jobs()
    assert isinstance(error.value, taas.ServiceUnreachable)
    assert isinstance(error.value, httpx.ConnectError)  # what httpx users already catch
    assert str(error.value).startswith(f"cannot reach {url} (")
    assert "is the taas server running there?" in str(error.value)


def test_download_checks_each_file_against_its_listed_sha256(
    url: str, client: taas.Client, tmp_path: Path
) -> None:
    job = client.submit(TINY_SYNTHETIC)
    store_model(url, job["id"])
    files = client.download(job["id"], tmp_path / "good")
    assert {path.name: path.read_bytes() for path in files} == {
        "model.json": MODEL_JSON,
        "model.safetensors": WEIGHTS,
    }

    # The stored weights change behind the service's back (a bad disk, a bad copy).
    root = get_settings().resolved_artifact_dir / job["id"]
    (stored,) = [
        path for path in root.rglob("*") if path.is_file() and path.read_bytes() == WEIGHTS
    ]
    stored.write_bytes(b"x" + WEIGHTS[1:])
    with pytest.raises(taas.ArtifactIntegrityError, match=r"model\.safetensors"):
        client.download(job["id"], tmp_path / "bad")
    assert not (tmp_path / "bad" / "model.safetensors").exists()
    assert not list((tmp_path / "bad").glob(".*.partial"))  # nothing half-written is left


def test_wait_reports_every_poll_and_gives_up_after_its_timeout(client: taas.Client) -> None:
    job = client.submit(TINY_SYNTHETIC)  # no worker here: it stays queued
    seen: list[str] = []
    started = time.monotonic()
    # A timeout many polls long: on a loaded machine one poll can take a good part of a second.
    with pytest.raises(taas.WaitTimeout, match="still queued"):
        client.wait(
            job["id"], timeout=3.0, poll_seconds=0.1, on_update=lambda j: seen.append(j["status"])
        )
    assert time.monotonic() - started >= 3.0
    assert len(seen) >= 2
    assert set(seen) == {"queued"}
    client.cancel(job["id"])
    assert client.wait(job["id"], timeout=5)["status"] == "cancelled"


def test_the_key_comes_from_the_environment_or_the_key_file(
    url: str, make_key: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = make_key("acme")
    monkeypatch.setenv("TAAS_API_URL", url)
    monkeypatch.delenv("TAAS_API_KEY", raising=False)
    monkeypatch.setenv("TAAS_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(taas.TaasError, match="TAAS_API_KEY"):
        taas.Client()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "api_key").write_text(key + "\n")
    monkeypatch.setenv("TAAS_HOME", str(tmp_path / "home"))
    with taas.Client() as from_file:
        assert from_file.jobs()["items"] == []
    monkeypatch.setenv("TAAS_API_KEY", key)
    monkeypatch.setenv("TAAS_HOME", str(tmp_path / "nowhere"))
    with taas.Client() as from_variable:
        assert from_variable.submit(TINY_SYNTHETIC)["status"] == "queued"


def test_installing_taas_adds_one_top_level_name_and_import_taas_stays_light(
    tmp_path: Path,
) -> None:
    probe = (
        "import importlib.util, sys, taas\n"
        "print(importlib.util.find_spec('app'), importlib.util.find_spec('worker'),"
        " 'torch' in sys.modules, taas.Client.__module__)\n"
    )
    # Run from elsewhere, so that the repository's own folders are not on sys.path.
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["None", "None", "False", "taas.client"]
    site_packages = sysconfig.get_paths()["purelib"]
    (distribution,) = importlib.metadata.distributions(name="taas", path=[site_packages])
    installed = distribution.files or []
    if not any("__editable__" in str(path) for path in installed):  # a real install, as in CI
        top_level = {path.parts[0] for path in installed if path.parts[0] != ".."}
        assert top_level == {"taas", f"taas-{importlib.metadata.version('taas')}.dist-info"}


def test_ids_are_one_path_segment_and_a_returned_dict_stands_for_its_id(
    client: taas.Client, tmp_path: Path
) -> None:
    job = client.submit(TINY_SYNTHETIC)
    assert client.job(job)["id"] == job["id"]  # what submit returned, passed as it is
    with pytest.raises(taas.InvalidId, match="expected a job id"):
        client.delete("")  # would name the collection, and its redirect looked like success
    with pytest.raises(taas.NotFoundError):
        client.job("../datasets")  # not a way to another route
    with pytest.raises(taas.NotFoundError):
        client.download("job_" + "0" * 24, tmp_path / "model")
    assert not (tmp_path / "model").exists()  # a job that is not there leaves no empty folder


def test_a_spec_built_from_numpy_values_is_sent_as_json(client: taas.Client) -> None:
    import numpy as np

    spec = {**TINY_SYNTHETIC, "training": {"epochs": np.int64(1), "lr": np.float32(0.01)}}
    assert client.submit(spec)["spec"]["training"]["epochs"] == 1


def test_messages_name_each_field_once_and_errors_survive_pickling(client: taas.Client) -> None:
    import pickle

    with pytest.raises(taas.ValidationError) as refused:
        client.submit({**TINY_SYNTHETIC, "training": {"epochs": 100_000}})
    assert str(refused.value) == "HTTP 422: training.epochs=100000: at most 200"
    copy = pickle.loads(pickle.dumps(refused.value))  # noqa: S301 (our own object, as a pool does)
    assert type(copy) is taas.ValidationError
    assert (copy.status_code, copy.detail) == (422, refused.value.detail)
    assert str(copy) == str(refused.value)


def test_a_client_is_checked_where_it_is_made_and_used(
    url: str, make_key: Callable[[str], str]
) -> None:
    key = make_key("acme")
    with pytest.raises(taas.TaasError, match="is not an http"):
        taas.Client(url.removeprefix("http://"), key)
    with pytest.raises(taas.TaasError, match="ends in /v1"):
        taas.Client(url + "/v1", key)
    client = taas.Client(url, key)
    assert repr(client) == f"Client(url={url!r})"
    with client:
        client.jobs()
    with pytest.raises(taas.TaasError, match="this Client is closed"):
        client.jobs()

    # A server that takes the connection and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with (
            taas.Client(address, key, timeout=0.3) as impatient,
            pytest.raises(taas.ServiceTimeout, match="did not answer GET /v1/jobs in time"),
        ):
            impatient.jobs()


def test_a_jobs_checkpoints_are_listed(url: str, client: taas.Client) -> None:
    job = client.submit(TINY_SYNTHETIC)
    assert client.checkpoints(job) == []
    as_worker(url, job["id"], "claim", json={"worker": "w1"})
    data = b"a checkpoint"
    digest = {"X-Content-SHA256": hashlib.sha256(data).hexdigest()}
    path = "artifacts/checkpoint-epoch1.pt"
    as_worker(url, job["id"], path, content=data, params={"kind": "checkpoint"}, headers=digest)
    [kept] = client.checkpoints(job["id"])
    assert (kept["epoch"], kept["name"], kept["size_bytes"]) == (1, "checkpoint-epoch1.pt", 12)
    assert kept["sha256"] == digest["X-Content-SHA256"]
