"""/openapi.json describes every route and the contract's models."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from taas.app.auth.dependencies import CurrentTenant
from taas.app.core.config import get_settings
from taas.app.main import create_app
from tests.conftest import TINY_SYNTHETIC

PUBLIC_ROUTES = {
    ("post", "/v1/jobs"): "201",
    ("get", "/v1/jobs"): "200",
    ("get", "/v1/jobs/{job_id}"): "200",
    ("post", "/v1/jobs/{job_id}/cancel"): "202",
    ("delete", "/v1/jobs/{job_id}"): "204",
    ("get", "/v1/jobs/{job_id}/metrics"): "200",
    ("get", "/v1/jobs/{job_id}/events"): "200",
    ("get", "/v1/jobs/{job_id}/artifacts"): "200",
    ("get", "/v1/jobs/{job_id}/artifacts/{name}"): "200",
    ("post", "/v1/datasets"): "201",
    ("get", "/v1/datasets"): "200",
    ("get", "/v1/datasets/{dataset_id}"): "200",
    ("delete", "/v1/datasets/{dataset_id}"): "204",
    ("get", "/healthz"): "200",
    ("get", "/readyz"): "200",
}


def schema(api: TestClient) -> dict[str, Any]:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_every_public_route_is_described_with_its_success_status(api: TestClient) -> None:
    paths = schema(api)["paths"]
    for (method, path), success in PUBLIC_ROUTES.items():
        operation = paths[path][method]
        assert success in operation["responses"], (method, path)


def test_job_model_has_every_contract_field(api: TestClient) -> None:
    components = schema(api)["components"]["schemas"]
    job = components["JobOut"]["properties"]
    contract = {
        "id", "name", "status", "spec", "attempt", "created_at", "started_at", "finished_at",
        "progress", "metrics", "error", "artifacts",
    }  # fmt: skip
    assert contract <= set(job)
    assert set(job["status"]["enum"]) == {
        "queued", "running", "cancelling", "succeeded", "failed", "cancelled",
    }  # fmt: skip
    point = components["MetricPointOut"]["properties"]
    assert set(point) == {
        "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
        "epoch_seconds", "samples_per_second",
    }  # fmt: skip
    assert set(components["ArtifactOut"]["properties"]) == {
        "name", "kind", "size_bytes", "sha256", "created_at",
    }  # fmt: skip


def test_spec_forbids_unknown_fields_in_the_schema(api: TestClient) -> None:
    components = schema(api)["components"]["schemas"]
    for name in ("JobSpec", "TrainingSpec", "MlpSpec", "CnnSpec"):
        assert components[name]["additionalProperties"] is False, name


def test_routes_declare_their_authentication(api: TestClient) -> None:
    document = schema(api)
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"]["scheme"] == "bearer"
    assert schemes["WorkerToken"]["scheme"] == "bearer"
    assert document["paths"]["/v1/jobs"]["post"]["security"] == [{"ApiKey": []}]
    upload = document["paths"]["/internal/v1/jobs/{job_id}/attempts/{attempt}/artifacts/{name}"]
    assert upload["put"]["security"] == [{"WorkerToken": []}]
    assert "application/octet-stream" in upload["put"]["requestBody"]["content"]


def test_every_public_operation_declares_the_shared_errors_with_the_error_shape(
    api: TestClient,
) -> None:
    document = schema(api)
    error = {"$ref": "#/components/schemas/Error"}
    assert document["components"]["schemas"]["Error"]["required"] == ["detail"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    public = [
        (path, operation)
        for path, item in document["paths"].items()
        for operation in item.values()
        if operation.get("security") == [{"ApiKey": []}]
    ]
    assert len(public) >= 20
    for path, operation in public:
        responses = operation["responses"]
        for status in ("401", "403", "429", "503"):
            assert responses[status]["content"]["application/json"]["schema"] == error, path
        assert "Retry-After" in responses["429"]["headers"], path
        if "{" in path:
            assert responses["404"]["content"]["application/json"]["schema"] == error, path


def test_every_worker_route_on_a_job_declares_the_409_of_a_stale_attempt(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    document = schema(api)
    on_jobs = [
        (path, operation)
        for path, item in document["paths"].items()
        if path.startswith("/internal/v1/jobs/")
        for operation in item.values()
    ]
    assert len(on_jobs) >= 9
    for path, operation in on_jobs:
        conflict = operation["responses"]["409"]
        assert conflict["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }, path
    # And it is answered so: a second claim of a job that is running already.
    job = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()
    claim = f"/internal/v1/jobs/{job['id']}/claim"
    assert api.post(claim, json={"worker": "w1"}, headers=worker_auth).status_code == 200
    again = api.post(claim, json={"worker": "w2"}, headers=worker_auth)
    assert again.status_code == 409
    assert "not queued" in again.json()["detail"]


def test_a_new_router_gets_the_shared_errors_without_declaring_them(api: TestClient) -> None:
    router = APIRouter()

    @router.delete("/v1/things/{thing_id}", status_code=204)
    def delete_thing(thing_id: str, tenant: CurrentTenant) -> None:
        """A route that declares nothing but its success."""

    app = create_app()
    app.include_router(router)
    responses = app.openapi()["paths"]["/v1/things/{thing_id}"]["delete"]["responses"]
    assert {"204", "401", "403", "404", "422", "429", "503", "507"} <= set(responses)


def test_creating_operations_link_to_the_operations_on_what_they_created(
    api: TestClient,
) -> None:
    paths = schema(api)["paths"]

    def linked(path: str, status: str) -> set[str]:
        links = paths[path]["post"]["responses"][status]["links"]
        assert {link["parameters"][next(iter(link["parameters"]))] for link in links.values()} == {
            "$response.body#/id"
        }
        return {link["operationId"] for link in links.values()}

    job_links = linked("/v1/jobs", "201")
    for target in ("get_job", "cancel_job", "delete_job", "job_metrics", "job_events"):
        assert any(operation.startswith(target) for operation in job_links), target
    assert any(operation.startswith("job_artifacts") for operation in job_links)
    assert any(operation.startswith("job_stream") for operation in job_links)
    assert len(linked("/v1/datasets", "201")) == 2
    assert len(linked("/v1/sweeps", "201")) == 3


def test_an_undeclared_method_is_405_with_every_method_of_the_path(
    api: TestClient, auth: dict[str, str]
) -> None:
    response = api.request("PATCH", "/v1/jobs/job_x", headers=auth)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}


def test_a_sweeps_spec_is_documented_to_need_its_dataset(api: TestClient) -> None:
    spec = schema(api)["components"]["schemas"]["SweepIn"]["properties"]["spec"]
    assert spec["required"] == ["dataset"]


def test_the_schema_states_this_servers_configured_maxima(
    taas_home: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAAS_MAX_EPOCHS", "50")
    monkeypatch.setenv("TAAS_MAX_WIDTH", "1024")
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        schemas = schema(client)["components"]["schemas"]
    assert schemas["TrainingSpec"]["properties"]["epochs"]["maximum"] == 50
    assert schemas["ResnetSpec"]["properties"]["widths"]["items"]["maximum"] == 1024
    assert schemas["CnnSpec"]["properties"]["hidden_size"]["maximum"] == 1024
    seconds = schemas["TrainingSpec"]["properties"]["max_seconds"]["anyOf"]
    assert {"type": "null"} in seconds  # the bound is on the number, null stays allowed
    assert [member.get("maximum") for member in seconds if member["type"] == "number"] == [
        get_settings().max_job_seconds
    ]
