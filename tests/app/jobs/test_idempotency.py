"""Idempotency-Key on POST /v1/jobs: retries are safe, a reused key with another body is 409,
keys belong to one tenant and expire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient

from taas.app.core.db import session_scope, utcnow
from taas.app.jobs.models import IdempotencyKey
from tests.conftest import TINY_SYNTHETIC


def post(
    api: TestClient, auth: dict[str, str], key: str, body: dict[str, object] | None = None
) -> tuple[int, dict[str, object], dict[str, str]]:
    response = api.post(
        "/v1/jobs", json=body or TINY_SYNTHETIC, headers={**auth, "Idempotency-Key": key}
    )
    return response.status_code, response.json(), dict(response.headers)


def job_count(api: TestClient, auth: dict[str, str]) -> int:
    return len(api.get("/v1/jobs", headers=auth, params={"limit": 100}).json()["items"])


def test_the_same_key_and_body_return_the_same_job(api: TestClient, auth: dict[str, str]) -> None:
    first_status, first, _ = post(api, auth, "order-42")
    second_status, second, headers = post(api, auth, "order-42")

    assert (first_status, second_status) == (201, 201)
    assert second["id"] == first["id"]
    assert headers["idempotent-replayed"] == "true"
    assert job_count(api, auth) == 1


def test_key_order_and_spacing_do_not_make_another_body(
    api: TestClient, auth: dict[str, str]
) -> None:
    _, first, _ = post(api, auth, "k", {"dataset": "fashion_mnist", "device": "cpu"})
    response = api.post(
        "/v1/jobs",
        content=b'{ "device" : "cpu",  "dataset": "fashion_mnist" }',
        headers={**auth, "Idempotency-Key": "k", "Content-Type": "application/json"},
    )

    assert response.json()["id"] == first["id"]


def test_the_same_key_with_another_body_is_409(api: TestClient, auth: dict[str, str]) -> None:
    post(api, auth, "order-42")
    other = {**TINY_SYNTHETIC, "name": "something else"}

    status, body, _ = post(api, auth, "order-42", other)

    assert status == 409
    assert "different request body" in str(body["detail"])
    assert job_count(api, auth) == 1


def test_keys_belong_to_one_tenant(
    api: TestClient, auth: dict[str, str], make_key: Callable[[str], str]
) -> None:
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    _, mine, _ = post(api, auth, "shared-key")
    _, theirs, _ = post(api, other, "shared-key")

    assert theirs["id"] != mine["id"]


def test_an_expired_key_makes_a_new_job(api: TestClient, auth: dict[str, str]) -> None:
    _, first, _ = post(api, auth, "old")
    with session_scope() as session:
        for record in session.query(IdempotencyKey).all():
            record.created_at = utcnow() - timedelta(hours=25)

    _, second, _ = post(api, auth, "old")

    assert second["id"] != first["id"]
    assert job_count(api, auth) == 2


def test_malformed_keys_are_422(api: TestClient, auth: dict[str, str]) -> None:
    too_long = api.post(
        "/v1/jobs", json=TINY_SYNTHETIC, headers={**auth, "Idempotency-Key": "k" * 256}
    )
    empty = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers={**auth, "Idempotency-Key": ""})

    assert too_long.status_code == 422
    assert empty.status_code == 422
    assert job_count(api, auth) == 0
