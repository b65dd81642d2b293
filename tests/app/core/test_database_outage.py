"""While PostgreSQL restarts, every route answers 503 with Retry-After (never 500), and the
API serves again as soon as the database is back, without a restart of its own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import TINY_SYNTHETIC, clear_caches
from tests.private_servers import PrivatePostgres, private_folder

pytestmark = pytest.mark.postgres


@pytest.fixture
def restartable_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of this test's own, which it may stop and start."""
    folder = private_folder()  # readable by the user PostgreSQL may run as, unlike tmp_path
    server = PrivatePostgres(folder)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def api_on_restartable_postgres(
    taas_home: Path, restartable_postgres: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    from taas.app.core import migrate
    from taas.app.main import create_app

    url = restartable_postgres.url.replace("postgresql://", "postgresql+psycopg://")
    monkeypatch.setenv("TAAS_DATABASE_URL", url)
    clear_caches()
    migrate.upgrade()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client
    clear_caches()


def test_a_stopped_database_is_503_with_retry_after_and_service_resumes(
    api_on_restartable_postgres: TestClient,
    restartable_postgres: PrivatePostgres,
    make_key: object,
    worker_auth: dict[str, str],
) -> None:
    api = api_on_restartable_postgres
    from taas.app.auth.service import create_api_key
    from taas.app.core.db import session_scope

    with session_scope() as session:
        auth = {"Authorization": f"Bearer {create_api_key(session, 'acme')}"}
    job_id = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"]
    claim_path = f"/internal/v1/jobs/{job_id}/claim"

    restartable_postgres.stop()
    answers = [
        api.get("/v1/jobs", headers=auth),
        api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth),
        api.get(f"/v1/jobs/{job_id}", headers=auth),
        api.post(claim_path, json={"worker": "w1"}, headers=worker_auth),
    ]
    for answer in answers:
        assert answer.status_code == 503, (answer.request.url, answer.text)
        assert answer.headers["retry-after"].isdigit()
        assert "database" in answer.json()["detail"]
    assert api.get("/readyz").json()["database"] == "down"

    restartable_postgres.start()
    assert api.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200
    assert api.post(claim_path, json={"worker": "w1"}, headers=worker_auth).status_code == 200
    assert api.get("/readyz").status_code == 200


def test_a_request_whose_connection_the_database_ended_closes_without_an_error(
    taas_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's session is rolled back after the response has started: a connection the
    server terminated meanwhile (a restart) has nothing to roll back, and must not raise there."""
    from sqlalchemy import text

    from taas.app.core.db import get_session

    monkeypatch.setenv("TAAS_DATABASE_URL", postgres_url)
    clear_caches()
    sessions = get_session()
    session = next(sessions)
    backend = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))

    sessions.close()  # the dependency's teardown: raised OperationalError before
    clear_caches()
