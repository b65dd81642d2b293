"""Public job routes through the ASGI app: contract, pagination, cancel/delete, tenant isolation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taas.app.core.config import get_settings
from taas.app.spec import JobSpec, normalized
from tests.conftest import TINY_SYNTHETIC, epoch_progress

ROOT = Path(__file__).resolve().parents[3]


def submit(api: TestClient, auth: dict[str, str], **overrides: object) -> dict[str, object]:
    response = api.post("/v1/jobs", json={**TINY_SYNTHETIC, **overrides}, headers=auth)
    assert response.status_code == 201, response.text
    job: dict[str, object] = response.json()
    return job


def test_submit_returns_normalized_spec_and_queued_job(
    api: TestClient, auth: dict[str, str]
) -> None:
    response = api.post("/v1/jobs", json={"dataset": "fashion_mnist"}, headers=auth)
    assert response.status_code == 201
    job = response.json()
    assert job["status"] == "queued"
    assert job["id"].startswith("job_")
    assert job["attempt"] == 0
    assert job["spec"]["model"] == {
        "arch": "cnn",
        "channels": [24, 48],
        "pool_every": 1,
        "pooling": "max",
        "padding": "same",
        "hidden_size": 128,
        "activation": "relu",
        "dropout": 0.0,
        "batch_norm": False,
    }
    training = job["spec"]["training"]
    assert (training["epochs"], training["batch_size"], training["lr"]) == (3, 128, 0.01)
    assert training["label_smoothing"] == 0.1
    assert training["optimizer"] == "adamw"
    assert training["augment"] == {"flip": False, "translate": 0}
    assert job["name"] == "cnn-fashion_mnist"
    # Two conv3x3 with bias (28 -> 14 -> 7 after the pools), a 128-unit fc, then the output.
    convs = (1 * 24 * 9 + 24) + (24 * 48 * 9 + 48)
    fcs = (48 * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    assert job["parameter_count"] == convs + fcs == 313_130
    assert epoch_progress(job) == {"epoch": 0, "epochs": 3, "fraction": 0.0}
    assert job["error"] is None
    assert job["artifacts"] == []
    events = api.get(f"/v1/jobs/{job['id']}/events", headers=auth).json()["items"]
    assert [event["status"] for event in events] == ["queued"]


def test_resnet_gets_its_own_recipe_unless_the_spec_sets_it(
    api: TestClient, auth: dict[str, str]
) -> None:
    resnet = {"dataset": "fashion_mnist", "model": {"arch": "resnet"}}
    job = api.post("/v1/jobs", json=resnet, headers=auth).json()
    assert job["spec"]["model"]["widths"] == [64, 128, 256]
    training = job["spec"]["training"]
    assert (training["epochs"], training["label_smoothing"]) == (15, 0.1)
    assert (training["batch_size"], training["lr"]) == (256, 0.003)
    assert training["augment"] == {"flip": True, "translate": 0}
    assert training["test_time_flip"] is True
    assert job["progress"]["epochs"] == 15

    chosen = {**resnet, "training": {"epochs": 4, "augment": {"translate": 1}}}
    job = api.post("/v1/jobs", json=chosen, headers=auth).json()
    training = job["spec"]["training"]
    assert training["epochs"] == 4
    assert training["augment"] == {"flip": False, "translate": 1}  # the user's object, whole
    assert training["label_smoothing"] == 0.1
    # No flips in training: no mirror images at test time either, unless the spec asks.
    assert training["test_time_flip"] is False
    asked = {**resnet, "training": {"augment": {"flip": False}, "test_time_flip": True}}
    job = api.post("/v1/jobs", json=asked, headers=auth).json()
    assert job["spec"]["training"]["test_time_flip"] is True


def test_a_job_bound_for_a_gpu_gets_the_gpu_recipe_when_it_names_no_model(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def stored_spec(body: dict[str, object]) -> dict[str, Any]:
        response = api.post("/v1/jobs", json={"dataset": "fashion_mnist", **body}, headers=auth)
        assert response.status_code == 201, response.text
        fetched = api.get(f"/v1/jobs/{response.json()['id']}", headers=auth).json()
        assert fetched["spec"] == response.json()["spec"]
        return dict(fetched["spec"])

    example = json.loads((ROOT / "examples" / "gpu_recipe.json").read_text())
    recipe = normalized(JobSpec.model_validate(example))
    on_cuda = stored_spec({"device": "cuda"})
    assert (on_cuda["model"], on_cuda["training"]) == (recipe["model"], recipe["training"])

    # device auto: the CPU default, unless `device: auto` jobs go to the GPU queue.
    auto: dict[str, object] = {"training": {"epochs": 4}}
    assert stored_spec(auto)["model"]["arch"] == "cnn"
    monkeypatch.setenv("TAAS_DEFAULT_QUEUE", "gpu")
    get_settings.cache_clear()
    on_gpu_queue = stored_spec(auto)
    assert (on_gpu_queue["model"], on_gpu_queue["device"]) == (recipe["model"], "auto")
    # The user's field, the recipe's rest.
    assert on_gpu_queue["training"] == {**recipe["training"], "epochs": 4}
    # A spec that names its model keeps it, and its architecture's recipe.
    named = stored_spec({"model": {"arch": "mlp"}})
    assert (named["model"]["arch"], named["training"]["batch_size"]) == ("mlp", 256)


def test_get_returns_the_same_job(api: TestClient, auth: dict[str, str]) -> None:
    job = submit(api, auth)
    fetched = api.get(f"/v1/jobs/{job['id']}", headers=auth).json()
    assert fetched == job


def test_list_paginates_newest_first_with_cursor(api: TestClient, auth: dict[str, str]) -> None:
    ids = [submit(api, auth)["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/jobs", params=params, headers=auth).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_list_filters_by_status(api: TestClient, auth: dict[str, str]) -> None:
    kept = submit(api, auth)
    cancelled = submit(api, auth)
    api.post(f"/v1/jobs/{cancelled['id']}/cancel", headers=auth)
    queued = api.get("/v1/jobs", params={"status": "queued"}, headers=auth).json()["items"]
    assert [job["id"] for job in queued] == [kept["id"]]
    done = api.get("/v1/jobs", params={"status": "cancelled"}, headers=auth).json()["items"]
    assert [job["id"] for job in done] == [cancelled["id"]]


def test_cancel_queued_job_is_immediate_and_final(api: TestClient, auth: dict[str, str]) -> None:
    job = submit(api, auth)
    response = api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    assert response.json()["error"] == {
        "type": "cancelled",
        "message": "cancelled by the user before it started",
    }
    again = api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert again.status_code == 409
    assert again.json()["detail"] == f"job {job['id']} has already ended (cancelled)"


def test_delete_only_terminal_jobs(api: TestClient, auth: dict[str, str]) -> None:
    job = submit(api, auth)
    refused = api.delete(f"/v1/jobs/{job['id']}", headers=auth)
    assert refused.status_code == 409
    assert "queued" in refused.json()["detail"]
    api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert api.delete(f"/v1/jobs/{job['id']}", headers=auth).status_code == 204
    assert api.get(f"/v1/jobs/{job['id']}", headers=auth).status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer taas_00000000_wrong", "Basic abc"])
def test_missing_or_invalid_key_is_401(api: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = api.get("/v1/jobs", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_another_tenants_job_is_404_on_every_route(
    api: TestClient, auth: dict[str, str], make_key: Callable[[str], str]
) -> None:
    job = submit(api, auth)
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    base = f"/v1/jobs/{job['id']}"
    for method, path in [
        ("GET", base),
        ("POST", f"{base}/cancel"),
        ("DELETE", base),
        ("GET", f"{base}/metrics"),
        ("GET", f"{base}/events"),
        ("GET", f"{base}/artifacts"),
        ("GET", f"{base}/artifacts/model.safetensors"),
    ]:
        response = api.request(method, path, headers=other)
        assert response.status_code == 404, (method, path, response.text)
        assert "not found" in response.json()["detail"]
    assert api.get("/v1/jobs", headers=other).json()["items"] == []
    assert api.get(base, headers=auth).json()["status"] == "queued"


def test_health_and_readiness(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok", "database": None, "broker": None}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert {key: body[key] for key in ("status", "database", "broker", "storage")} == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "storage": "ok",
    }


def test_a_tenant_at_its_active_job_cap_gets_429_until_one_ends(
    api: TestClient,
    auth: dict[str, str],
    make_key: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAAS_MAX_ACTIVE_JOBS_PER_TENANT", "2")
    get_settings.cache_clear()
    first, _ = submit(api, auth), submit(api, auth)

    refused = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth)

    assert refused.status_code == 429
    assert "2 jobs queued or running" in refused.json()["detail"]
    assert len(api.get("/v1/jobs", headers=auth).json()["items"]) == 2  # nothing stored
    # Another tenant has a cap of its own.
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    assert api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=other).status_code == 201
    # An ended job frees its place.
    api.post(f"/v1/jobs/{first['id']}/cancel", headers=auth)
    assert api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).status_code == 201


def test_a_spec_the_schema_refuses_also_names_the_configured_limits_it_breaks(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epochs 0 (the schema's minimum) and a batch over the configured maximum: both at once, so
    a form flags both fields, not one per try."""
    monkeypatch.setenv("TAAS_MAX_BATCH_SIZE", "2048")
    get_settings.cache_clear()
    spec = {**TINY_SYNTHETIC, "training": {"epochs": 0, "batch_size": 100_000}}
    response = api.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 422
    by_field = {tuple(item["loc"]): item["msg"] for item in response.json()["detail"]}
    assert set(by_field) == {("body", "training", "epochs"), ("body", "training", "batch_size")}
    assert by_field["body", "training", "batch_size"] == "training.batch_size=100000: at most 2048"

    sweep = {
        "spec": spec,
        "parameters": {"training.lr": {"values": [0.1, 0.01]}},
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
    }
    response = api.post("/v1/sweeps", json=sweep, headers=auth)
    assert response.status_code == 422
    locs = {tuple(item["loc"]) for item in response.json()["detail"]}
    under_spec = {("body", "spec", "training", field) for field in ("epochs", "batch_size")}
    assert locs == under_spec


def test_every_width_over_the_limit_is_named_by_its_index(
    api: TestClient, auth: dict[str, str]
) -> None:
    spec = {**TINY_SYNTHETIC, "model": {"arch": "cnn", "channels": [8, 5000, 9000]}}
    response = api.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 422
    assert [item["msg"] for item in response.json()["detail"]] == [
        "model.channels.1=5000: at most 4096",
        "model.channels.2=9000: at most 4096",
    ]
