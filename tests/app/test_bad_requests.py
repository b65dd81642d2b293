"""Requests a real client could get wrong, each answered with the right 4xx and a detail that names
the problem (the field or the value): never a 500, never a silently accepted mistake."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TINY_SYNTHETIC

NO_BODY = object()
TWO_MB_SPEC = json.dumps({"dataset": "synthetic", "name": "x" * 2_000_000}).encode()
Caller = Literal["tenant", "worker", "anonymous"]


@dataclass(frozen=True)
class Bad:
    """One bad request. ``{job}`` in the path becomes the id of a queued job of the tenant."""

    method: str
    path: str
    status: int
    names: tuple[str, ...]  # each must appear (case-insensitively) in the JSON `detail`
    body: Any = NO_BODY  # sent as JSON
    content: bytes | None = None  # sent as is
    chunked: bool = False  # stream `content` without a Content-Length
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str | int] = field(default_factory=dict)
    caller: Caller = "tenant"


def submit(body: Any, status: int, *names: str, id: str) -> Any:
    return pytest.param(Bad("POST", "/v1/jobs", status, names, body=body), id=id)


def submit_raw(content: bytes, status: int, *names: str, id: str, **extra: Any) -> Any:
    headers = extra.pop("headers", {"Content-Type": "application/json"})
    bad = Bad("POST", "/v1/jobs", status, names, content=content, headers=headers, **extra)
    return pytest.param(bad, id=id)


def training(**fields: Any) -> dict[str, Any]:
    return {"dataset": "synthetic", "training": fields}


def mlp(dataset: str, **fields: Any) -> dict[str, Any]:
    return {"dataset": dataset, "model": {"arch": "mlp", **fields}}


def list_jobs(expected: int, *names: str, id: str, **params: str | int) -> Any:
    return pytest.param(Bad("GET", "/v1/jobs", expected, names, params=params), id=id)


def cursor(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def get(path: str, status: int, *names: str, id: str) -> Any:
    return pytest.param(Bad("GET", path, status, names), id=id)


def internal(method: str, action: str, status: int, *names: str, id: str, **extra: Any) -> Any:
    extra.setdefault("caller", "worker")
    bad = Bad(method, f"/internal/v1/jobs/{action}", status, names, **extra)
    return pytest.param(bad, id=id)


SHA_OF_NOTHING = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

BAD_REQUESTS = [
    # Wrong types.
    submit(training(epochs="five"), 422, "epochs", id="epochs-as-string"),
    # Recipes PyTorch would refuse only once the job runs.
    submit(training(optimizer="adam", nesterov=True), 422, "nesterov", id="nesterov-without-sgd"),
    submit(
        {**mlp("synthetic", batch_norm=True), "training": {"batch_size": 1}},
        422,
        "batch_norm",
        id="batch-norm-with-batches-of-one",
    ),
    submit(
        {
            "dataset": "synthetic",
            "dataset_options": {"train_size": 150_000, "shape": [4, 256, 256]},
        },
        422,
        "dataset_options",
        id="synthetic-set-too-many-bytes",
    ),
    submit(training(batch_size=[32]), 422, "batch_size", id="batch-size-as-list"),
    submit({"dataset": 10}, 422, "dataset", id="dataset-as-number"),
    submit(mlp("mnist", hidden_sizes=128), 422, "hidden_sizes", id="hidden-sizes-not-a-list"),
    # Huge numbers: refused by the configured limits, naming field and value.
    submit(training(epochs=10**9), 422, "training.epochs=1000000000", id="epochs-huge"),
    submit(training(batch_size=10**7), 422, "batch_size=10000000", id="batch-size-huge"),
    submit(mlp("mnist", hidden_sizes=[10**6]), 422, "hidden_sizes", "1000000", id="width-huge"),
    submit(training(lr=1e308), 422, "lr", id="lr-huge"),
    submit(training(seed=2**40), 422, "seed", id="seed-over-32-bits"),
    submit(training(max_seconds=1e9), 422, "max_seconds", id="max-seconds-over-limit"),
    submit(
        {"dataset": "synthetic", "dataset_options": {"train_size": 10**6}},
        422,
        "train_size",
        id="synthetic-too-many-samples",
    ),
    submit(
        {"dataset": "synthetic", "dataset_options": {"shape": [3, 4096, 4096]}},
        422,
        "shape",
        id="synthetic-images-too-large",
    ),
    submit(
        {"dataset": "cifar10", "model": {"arch": "mlp", "hidden_sizes": [4096] * 4}},
        422,
        "parameters",
        "50000000",
        id="parameter-count-over-limit",
    ),
    submit(
        {"dataset": "mnist", "model": {"arch": "cnn", "channels": [8] * 6}},
        422,
        "channels",
        "28x28",
        id="cnn-more-stages-than-the-image-allows",
    ),
    # Zero and negative values.
    submit(training(epochs=0), 422, "epochs", id="epochs-zero"),
    submit(training(batch_size=-32), 422, "batch_size", id="batch-size-negative"),
    submit(training(lr=0), 422, "lr", id="lr-zero"),
    submit(mlp("mnist", hidden_sizes=[0]), 422, "hidden_sizes", id="width-zero"),
    submit(mlp("mnist", dropout=1.0), 422, "dropout", id="dropout-one"),
    # NaN and Infinity are not JSON, but Python's parser takes them: the spec must refuse them.
    submit_raw(b'{"dataset":"synthetic","training":{"lr":NaN}}', 422, "lr", id="lr-nan-raw-json"),
    submit_raw(
        b'{"dataset":"synthetic","training":{"max_seconds":Infinity}}',
        422,
        "max_seconds",
        id="max-seconds-infinity-raw-json",
    ),
    # Bodies that are not a spec at all.
    submit_raw(b"", 422, "body", "required", id="empty-body"),
    submit_raw(b"dataset=mnist&epochs=5", 422, "json", id="not-json"),
    submit_raw(b'{"dataset": "mnist"', 422, "json", id="truncated-json"),
    submit_raw(b'[{"dataset": "mnist"}]', 422, "body", "object", id="json-array"),
    submit({}, 422, "dataset", "required", id="dataset-missing"),
    submit({"dataset": "mnist", "name": ""}, 422, "name", id="name-empty"),
    submit_raw(
        json.dumps({"dataset": "mnist"}).encode(),
        415,
        "content-type",
        "text/plain",
        headers={"Content-Type": "text/plain"},
        id="content-type-text",
    ),
    submit_raw(
        b"dataset=mnist",
        415,
        "content-type",
        "application/x-www-form-urlencoded",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        id="content-type-form",
    ),
    submit_raw(
        json.dumps({"dataset": "mnist"}).encode(),
        415,
        "content-type",
        headers={},
        id="content-type-missing",
    ),
    # Typos must fail loudly, not train with the defaults.
    submit(training(epocs=5), 422, "epocs", id="typo-in-training"),
    submit({"dataset": "mnist", "modle": {"arch": "mlp"}}, 422, "modle", id="typo-top-level"),
    # Names that do not exist.
    submit({"dataset": "imagenet"}, 422, "dataset", "imagenet", id="unknown-dataset"),
    submit(
        {"dataset": "mnist", "model": {"arch": "transformer"}},
        422,
        "transformer",
        id="unknown-arch",
    ),
    submit(mlp("mnist", activation="swish"), 422, "activation", id="unknown-activation"),
    submit(training(optimizer="lion"), 422, "optimizer", id="unknown-optimizer"),
    submit(training(lr_schedule="linear"), 422, "lr_schedule", id="unknown-schedule"),
    submit({"dataset": "mnist", "device": "tpu"}, 422, "device", id="unknown-device"),
    submit(
        {"dataset": "mnist", "dataset_options": {"num_classes": 5}},
        422,
        "dataset_options",
        "synthetic",
        id="dataset-options-on-mnist",
    ),
    # Bodies over the JSON cap, declared or streamed.
    submit_raw(TWO_MB_SPEC, 413, "1000000", id="two-mb-with-content-length"),
    submit_raw(TWO_MB_SPEC, 413, "1000000", chunked=True, id="two-mb-chunked"),
    # No or wrong credentials.
    pytest.param(
        Bad("POST", "/v1/jobs", 401, ("api key",), body=TINY_SYNTHETIC, caller="anonymous"),
        id="submit-without-key",
    ),
    pytest.param(
        Bad("GET", "/v1/jobs", 401, ("api key",), caller="worker"),
        id="worker-token-is-not-an-api-key",
    ),
    # Job ids.
    get("/v1/jobs/nope", 404, "nope", id="job-id-unknown"),
    get("/v1/jobs/job_0123456789abcdef01234567", 404, "not found", id="job-id-well-formed"),
    get("/v1/jobs/" + "j" * 5000, 422, "job_id", id="job-id-5000-chars"),
    get("/v1/jobs/..%2Fetc%2Fpasswd", 404, "not found", id="job-id-path-traversal"),
    get("/v1/jobs/nope/metrics", 404, "nope", id="metrics-of-unknown-job"),
    pytest.param(Bad("DELETE", "/v1/jobs/{job}", 409, ("queued",)), id="delete-queued-job"),
    pytest.param(Bad("PUT", "/v1/jobs/{job}", 405, ("not allowed",)), id="method-not-allowed"),
    # Listing.
    list_jobs(422, "cursor", id="cursor-garbage", cursor="!!not-a-cursor!!"),
    list_jobs(422, "cursor", id="cursor-base64-garbage-json", cursor=cursor(b"{not json")),
    list_jobs(422, "cursor", id="cursor-base64-json-list", cursor=cursor(b"[1, 2]")),
    list_jobs(
        422,
        "cursor",
        id="cursor-naive-date",
        cursor=cursor(b'{"c": "2024-01-01T00:00:00", "i": "job_0"}'),
    ),
    list_jobs(
        422,
        "cursor",
        id="cursor-date-out-of-range-in-utc",
        cursor=cursor(b'{"c": "0001-01-01T00:00:00+14:00", "i": "job_0"}'),
    ),
    list_jobs(422, "cursor", id="cursor-non-ascii", cursor="caf\u00e9"),
    list_jobs(422, "cursor", id="cursor-too-long", cursor="a" * 501),
    list_jobs(422, "status", id="status-unknown", status="done"),
    list_jobs(422, "limit", id="limit-zero", limit=0),
    list_jobs(422, "limit", id="limit-1000", limit=1000),
    list_jobs(422, "limit", id="limit-not-a-number", limit="ten"),
    # Artifact downloads: names are looked up, never joined onto a path.
    get("/v1/jobs/{job}/artifacts/model.safetensors", 404, "model.safetensors", id="no-artifact"),
    get("/v1/jobs/{job}/artifacts/%2E%2E", 404, "'..'", id="artifact-dotdot"),
    get(
        "/v1/jobs/{job}/artifacts/..%2F..%2F..%2Fetc%2Fpasswd",
        404,
        "../../../etc/passwd",
        id="artifact-path-traversal",
    ),
    get("/v1/jobs/{job}/artifacts/%2Fetc%2Fpasswd", 404, "/etc/passwd", id="artifact-absolute"),
    get("/v1/jobs/{job}/artifacts/.env", 404, ".env", id="artifact-hidden-file"),
    get("/v1/jobs/{job}/artifacts/" + "a" * 300, 422, "name", id="artifact-name-300-chars"),
    # Worker routes.
    internal(
        "POST",
        "{job}/claim",
        401,
        "worker token",
        body={"worker": "w"},
        caller="tenant",
        id="internal-with-api-key",
    ),
    internal(
        "POST",
        "{job}/claim",
        401,
        "worker token",
        body={"worker": "w"},
        caller="anonymous",
        id="internal-without-token",
    ),
    internal("POST", "{job}/claim", 422, "worker", body={}, id="claim-without-worker-name"),
    internal("POST", "job_nope/claim", 404, "job_nope", body={"worker": "w"}, id="claim-unknown"),
    internal("POST", "j" * 41 + "/claim", 422, "job_id", body={"worker": "w"}, id="claim-long-id"),
    internal(
        "POST",
        "{job}/attempts/1/heartbeat",
        409,
        "attempt 1",
        "queued",
        body={},
        id="heartbeat-before-claim",
    ),
    internal(
        "POST", "{job}/attempts/0/heartbeat", 422, "attempt", body={}, id="heartbeat-attempt-0"
    ),
    internal(
        "POST",
        "{job}/attempts/1/heartbeat",
        422,
        "fraction",
        body={"fraction": 1.5},
        id="heartbeat-fraction-over-one",
    ),
    internal(
        "POST",
        "{job}/attempts/1/metrics",
        422,
        "train_loss",
        content=b'{"epoch": 1, "train_loss": NaN}',
        headers={"Content-Type": "application/json"},
        id="metrics-nan-raw-json",
    ),
    internal(
        "POST", "{job}/attempts/1/metrics", 422, "epoch", body={"epoch": 0}, id="metrics-epoch-0"
    ),
    internal(
        "POST",
        "{job}/attempts/1/metrics",
        422,
        "val_acc",
        body={"epoch": 1, "val_acc": 0.5},
        id="metrics-unknown-field",
    ),
    internal(
        "POST",
        "{job}/attempts/1/metrics",
        413,
        "1000000",
        content=TWO_MB_SPEC,
        headers={"Content-Type": "application/json"},
        id="metrics-two-mb",
    ),
    internal(
        "POST",
        "{job}/attempts/1/finish",
        422,
        "status",
        body={"status": "done"},
        id="finish-unknown-status",
    ),
    internal(
        "POST",
        "{job}/attempts/1/finish",
        422,
        "error_type",
        body={"status": "failed", "error_type": "oops"},
        id="finish-unknown-error-type",
    ),
    internal(
        "PUT",
        "{job}/attempts/1/artifacts/model.json",
        422,
        "x-content-sha256",
        content=b"{}",
        id="upload-without-sha256",
    ),
    internal(
        "PUT",
        "{job}/attempts/1/artifacts/model.json",
        422,
        "kind",
        content=b"",
        params={"kind": "weights"},
        headers={"X-Content-SHA256": SHA_OF_NOTHING},
        id="upload-unknown-kind",
    ),
    internal(
        "PUT",
        "{job}/attempts/1/artifacts/..%2F..%2Fescape",
        422,
        "../../escape",
        content=b"",
        headers={"X-Content-SHA256": SHA_OF_NOTHING},
        id="upload-path-traversal",
    ),
]


@pytest.fixture
def job_id(api: TestClient, auth: dict[str, str]) -> str:
    response = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def chunks(content: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


@pytest.mark.parametrize("bad", BAD_REQUESTS)
def test_bad_request_is_a_4xx_that_names_the_problem(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    job_id: str,
    bad: Bad,
) -> None:
    credentials = {"tenant": auth, "worker": worker_auth, "anonymous": {}}[bad.caller]
    kwargs: dict[str, Any] = {"headers": {**credentials, **bad.headers}, "params": bad.params}
    if bad.body is not NO_BODY:
        kwargs["json"] = bad.body
    elif bad.content is not None:
        kwargs["content"] = chunks(bad.content) if bad.chunked else bad.content

    response = api.request(bad.method, bad.path.replace("{job}", job_id), **kwargs)

    assert response.status_code == bad.status, response.text[:2000]
    assert response.headers["content-type"] == "application/json"
    detail = json.dumps(response.json()["detail"]).lower()
    for name in bad.names:
        assert name.lower() in detail, (name, detail[:2000])


def test_rejected_specs_create_no_job(api: TestClient, auth: dict[str, str]) -> None:
    for body in [training(epochs=10**9), {"dataset": "imagenet"}, training(epocs=5)]:
        assert api.post("/v1/jobs", json=body, headers=auth).status_code == 422
    assert api.get("/v1/jobs", headers=auth).json()["items"] == []


def test_validation_errors_do_not_echo_the_input(api: TestClient, auth: dict[str, str]) -> None:
    secret = "s3cr3t-" + "x" * 50
    response = api.post("/v1/jobs", json={"dataset": "mnist", "modle": secret}, headers=auth)
    assert response.status_code == 422
    assert "modle" in response.text
    assert secret not in response.text
