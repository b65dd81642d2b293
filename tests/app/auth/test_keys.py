"""API keys: scopes, the key routes, revoking and expiry as every API process sees them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from taas.app.auth.models import ApiKey
from taas.app.auth.service import create_api_key, hash_key
from taas.app.core import migrate
from taas.app.core.db import session_scope
from tests.conftest import TINY_SYNTHETIC, clear_caches


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def admin(make_key: Callable[[str], str]) -> dict[str, str]:
    return bearer(make_key("acme"))


def new_key(api: TestClient, admin: dict[str, str], scope: str, **extra: str) -> dict[str, str]:
    answer = api.post(
        "/v1/keys", json={"name": f"{scope} key", "scope": scope, **extra}, headers=admin
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_read_key_reads_but_cannot_submit_and_the_403_names_the_scope(
    api: TestClient, admin: dict[str, str]
) -> None:
    read = bearer(new_key(api, admin, "read")["key"])

    assert api.get("/v1/jobs", headers=read).status_code == 200
    answer = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=read)

    assert answer.status_code == 403
    assert answer.json() == {"detail": "this API key has scope read; POST /v1/jobs needs write"}
    assert api.get("/v1/jobs", headers=read).json()["items"] == []  # nothing was submitted


def test_a_write_key_submits_and_cancels_but_cannot_manage_keys(
    api: TestClient, admin: dict[str, str]
) -> None:
    write = bearer(new_key(api, admin, "write")["key"])

    job = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=write)
    assert job.status_code == 201
    assert api.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=write).status_code == 202
    for method, path in [("GET", "/v1/keys"), ("POST", "/v1/keys"), ("DELETE", "/v1/keys/key_x")]:
        answer = api.request(method, path, headers=write, json={"name": "x", "scope": "read"})
        assert answer.status_code == 403, (method, path)
        assert (
            answer.json()["detail"] == f"this API key has scope write; {method} {path} needs admin"
        )


def test_a_new_key_is_shown_once_and_listed_without_its_secret(
    api: TestClient, admin: dict[str, str]
) -> None:
    created = new_key(api, admin, "read", expires_at="2099-01-01T00:00:00Z")

    assert created["key"].startswith(f"taas_{created['id'].removeprefix('key_')}_")
    assert created["scope"] == "read"
    assert created["expires_at"].startswith("2099-01-01T00:00:00")
    listed = api.get("/v1/keys", headers=admin)
    assert listed.status_code == 200
    [default, shown] = listed.json()["items"]
    assert default["name"] == "default"
    assert default["scope"] == "admin"
    assert shown == {key: value for key, value in created.items() if key != "key"}
    assert created["key"] not in listed.text
    assert hash_key(created["key"]) not in listed.text
    assert set(shown) == {"id", "name", "scope", "created_at", "expires_at", "last_used_at"}


def test_a_revoked_key_is_refused_and_no_longer_listed(
    api: TestClient, admin: dict[str, str]
) -> None:
    created = new_key(api, admin, "write")
    assert api.get("/v1/jobs", headers=bearer(created["key"])).status_code == 200

    assert api.delete(f"/v1/keys/{created['id']}", headers=admin).status_code == 204

    answer = api.get("/v1/jobs", headers=bearer(created["key"]))
    assert answer.status_code == 401
    assert answer.json()["detail"] == f"API key {created['id']} was revoked"
    assert created["id"] not in api.get("/v1/keys", headers=admin).text
    assert api.delete(f"/v1/keys/{created['id']}", headers=admin).status_code == 404


def test_another_tenants_key_is_not_found_and_not_listed(
    api: TestClient, admin: dict[str, str], make_key: Callable[[str], str]
) -> None:
    other_admin = bearer(make_key("globex"))
    theirs = new_key(api, other_admin, "read")

    answer = api.delete(f"/v1/keys/{theirs['id']}", headers=admin)

    assert answer.status_code == 404
    assert theirs["id"] not in api.get("/v1/keys", headers=admin).text
    assert api.get("/v1/jobs", headers=bearer(theirs["key"])).status_code == 200  # still works


def test_an_expired_key_is_401_saying_when_it_expired(
    api: TestClient, admin: dict[str, str]
) -> None:
    created = new_key(api, admin, "read", expires_at="2099-01-01T00:00:00Z")
    expired_at = datetime.now(UTC) - timedelta(seconds=1)
    with session_scope() as session:
        session.execute(
            update(ApiKey).where(ApiKey.public_id == created["id"]).values(expires_at=expired_at)
        )

    answer = api.get("/v1/jobs", headers=bearer(created["key"]))

    assert answer.status_code == 401
    assert answer.json()["detail"].startswith(f"API key {created['id']} expired at ")
    assert answer.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scope": "root"}, "scope"),
        ({"name": "", "scope": "read"}, "name"),
        ({"name": "x", "scope": "read", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "scope": "read", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"name": "x"}, "scope"),
    ],
)
def test_a_bad_key_request_is_422_naming_the_field(
    api: TestClient, admin: dict[str, str], body: dict[str, str], field: str
) -> None:
    answer = api.post("/v1/keys", json=body, headers=admin)

    assert answer.status_code == 422
    assert [item["loc"][-1] for item in answer.json()["detail"]] == [field]


def test_last_used_is_written_at_most_once_a_minute(api: TestClient, admin: dict[str, str]) -> None:
    created = new_key(api, admin, "read")
    assert created["last_used_at"] is None
    key = bearer(created["key"])

    api.get("/v1/jobs", headers=key)
    first = _last_used(created["id"])
    api.get("/v1/jobs", headers=key)
    assert _last_used(created["id"]) == first  # within the minute: not written again
    long_ago = datetime.now(UTC) - timedelta(minutes=2)
    with session_scope() as session:
        session.execute(
            update(ApiKey).where(ApiKey.public_id == created["id"]).values(last_used_at=long_ago)
        )
    api.get("/v1/jobs", headers=key)

    assert first is not None
    assert _last_used(created["id"]) > long_ago + timedelta(minutes=1)


def _last_used(public_id: str) -> datetime | None:
    with session_scope() as session:
        return session.scalar(select(ApiKey.last_used_at).where(ApiKey.public_id == public_id))


def test_no_key_appears_in_the_log(
    api: TestClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = new_key(api, admin, "read")
    api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=bearer(created["key"]))  # 403
    api.get("/v1/jobs", headers=bearer(created["key"] + "x"))  # 401
    api.delete(f"/v1/keys/{created['id']}", headers=admin)
    api.get("/v1/jobs", headers=bearer(created["key"]))  # 401, revoked

    for key in (created["key"], admin["Authorization"].removeprefix("Bearer ")):
        assert key not in caplog.text
        # the secret after taas_<prefix>_ (it may itself contain "_")
        assert key.split("_", 2)[2] not in caplog.text


@pytest.fixture
def two_apis_on_postgres(
    taas_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, TestClient]]:
    from taas.app.main import create_app

    monkeypatch.setenv("TAAS_DATABASE_URL", postgres_url)
    clear_caches()
    migrate.upgrade()
    with (
        TestClient(create_app(), raise_server_exceptions=False) as first,
        TestClient(create_app(), raise_server_exceptions=False) as second,
    ):
        yield first, second
    clear_caches()


@pytest.mark.postgres
def test_a_revoke_through_one_api_process_holds_at_the_next_request_in_another(
    two_apis_on_postgres: tuple[TestClient, TestClient],
) -> None:
    first, second = two_apis_on_postgres
    with session_scope() as session:
        admin = bearer(create_api_key(session, "acme"))
    created = new_key(first, admin, "write")
    assert second.get("/v1/jobs", headers=bearer(created["key"])).status_code == 200

    assert first.delete(f"/v1/keys/{created['id']}", headers=admin).status_code == 204

    assert second.get("/v1/jobs", headers=bearer(created["key"])).status_code == 401
