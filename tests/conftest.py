"""Shared fixtures: isolated settings, migrated databases (SQLite and PostgreSQL), API clients."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from app import migrate
from app.auth.service import create_api_key
from app.broker import get_celery_app
from app.config import get_settings
from app.db import reset_engine_cache, session_scope

POSTGRES_ADMIN_URL = os.environ.get(
    "TAAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TAAS_TEST_REDIS", "redis://127.0.0.1:6379")
WORKER_TOKEN = "test-worker-token-" + "x" * 16


def clear_caches() -> None:
    get_settings.cache_clear()
    reset_engine_cache()
    get_celery_app.cache_clear()


@pytest.fixture
def taas_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh TAAS_HOME with SQLite, a filesystem broker and local artifacts inside it."""
    home = tmp_path / "taas-home"
    home.mkdir()
    for name in ("TAAS_DATABASE_URL", "TAAS_BROKER_URL", "TAAS_API_KEY", "TAAS_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAAS_HOME", str(home))
    monkeypatch.setenv("TAAS_WORKER_TOKEN", WORKER_TOKEN)
    # In-process apps reconcile only when a test asks (tests call reconcile() themselves).
    monkeypatch.setenv("TAAS_RECONCILE_SECONDS", "3600")
    clear_caches()
    migrate.upgrade()
    yield home
    clear_caches()


@pytest.fixture
def api(taas_home: Path) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def make_key(taas_home: Path) -> Callable[[str], str]:
    """Create an API key for a tenant (the tenant is created on first use)."""

    def make(tenant: str = "acme") -> str:
        with session_scope() as session:
            return create_api_key(session, tenant)

    return make


@pytest.fixture
def auth(make_key: Callable[[str], str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('acme')}"}


@pytest.fixture
def worker_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {WORKER_TOKEN}"}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"taas_test_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TINY_SYNTHETIC = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 256, "test_size": 128, "shape": [1, 12, 12]},
    "training": {"epochs": 2, "batch_size": 32},
}
