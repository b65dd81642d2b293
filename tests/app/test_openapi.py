"""/openapi.json describes every route and the contract's models."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

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
