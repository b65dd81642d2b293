"""The webhook routes: create (secret shown once), list, describe, delete, deliveries; checks."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from taas.app.core.config import get_settings
from tests.app.webhooks.conftest import BearerFor

URL = "https://hooks.example.com/taas"


def create(api: TestClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    response = api.post(
        "/v1/webhooks", json={"url": URL, "events": ["job.succeeded"], **body}, headers=auth
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_create_shows_the_secret_once(api: TestClient, auth: dict[str, str]) -> None:
    created = create(api, auth, events=["job.failed", "job.succeeded", "job.failed"])
    assert created["id"].startswith("wh_")
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["job.failed", "job.succeeded"]
    assert created["enabled"] is True
    shown = api.get(f"/v1/webhooks/{created['id']}", headers=auth).json()
    assert "secret" not in shown
    assert shown["url"] == URL
    listed = api.get("/v1/webhooks", headers=auth).json()["items"]
    assert [item["id"] for item in listed] == [created["id"]]
    assert created["secret"] not in str(listed)


def test_delete_removes_the_webhook(api: TestClient, auth: dict[str, str]) -> None:
    webhook_id = create(api, auth)["id"]
    assert api.delete(f"/v1/webhooks/{webhook_id}", headers=auth).status_code == 204
    assert api.get(f"/v1/webhooks/{webhook_id}", headers=auth).status_code == 404
    assert api.get("/v1/webhooks", headers=auth).json()["items"] == []


def test_another_tenants_webhook_is_404(api: TestClient, bearer_for: BearerFor) -> None:
    owner, other = bearer_for("acme"), bearer_for("globex")
    webhook_id = create(api, owner)["id"]
    for method, path in [
        ("GET", f"/v1/webhooks/{webhook_id}"),
        ("GET", f"/v1/webhooks/{webhook_id}/deliveries"),
        ("DELETE", f"/v1/webhooks/{webhook_id}"),
    ]:
        response = api.request(method, path, headers=other)
        assert response.status_code == 404, (method, path, response.text)
        assert "secret" not in response.text
    assert api.get("/v1/webhooks", headers=other).json()["items"] == []
    assert api.get(f"/v1/webhooks/{webhook_id}", headers=owner).status_code == 200


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::1]/hook", "loopback"),
        ("http://rebinding.example.com/hook", "loopback"),
        ("ftp://hooks.example.com/hook", "http or https"),
    ],
)
def test_unsafe_urls_are_refused_with_422(
    api: TestClient, auth: dict[str, str], url: str, reason: str
) -> None:
    response = api.post("/v1/webhooks", json={"url": url, "events": ["job.failed"]}, headers=auth)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "url"]
    assert reason in detail["msg"]


def test_private_urls_are_accepted_when_allowed(
    api: TestClient, auth: dict[str, str], allow_private: None
) -> None:
    assert (
        create(api, auth, url="http://127.0.0.1:8080/hook")["url"] == "http://127.0.0.1:8080/hook"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"url": URL, "events": []},
        {"url": URL, "events": ["job.exploded"]},
        {"url": URL + "/" + "a" * 2100, "events": ["job.failed"]},
        {"url": URL, "events": ["job.failed"], "secret": "mine"},
    ],
)
def test_invalid_bodies_are_422(
    api: TestClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    response = api.post("/v1/webhooks", json=body, headers=auth)
    assert response.status_code == 422, response.text


def test_endpoints_per_tenant_are_capped(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAAS_WEBHOOK_MAX_ENDPOINTS_PER_TENANT", "2")
    get_settings.cache_clear()
    create(api, auth)
    create(api, auth)
    response = api.post("/v1/webhooks", json={"url": URL, "events": ["job.failed"]}, headers=auth)
    assert response.status_code == 429
    assert "TAAS_WEBHOOK_MAX_ENDPOINTS_PER_TENANT" in response.json()["detail"]


def test_a_read_only_key_cannot_create(api: TestClient, auth: dict[str, str]) -> None:
    key = api.post("/v1/keys", json={"name": "ro", "scope": "read"}, headers=auth)
    assert key.status_code == 201, key.text
    reader = {"Authorization": f"Bearer {key.json()['key']}"}
    response = api.post("/v1/webhooks", json={"url": URL, "events": ["job.failed"]}, headers=reader)
    assert response.status_code == 403
    assert api.get("/v1/webhooks", headers=reader).status_code == 200
