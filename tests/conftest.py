"""Shared fixtures: isolated settings, migrated databases (SQLite and PostgreSQL), API clients."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from xdist.scheduler import LoadScopeScheduling

from taas.app.auth.service import create_api_key
from taas.app.core import migrate
from taas.app.core.config import get_settings
from taas.app.core.db import reset_engine_cache, session_scope
from taas.app.scheduling.broker import get_celery_app
from taas.app.storage.factory import clear_storage_caches
from tests.private_servers import (
    PrivatePostgres,
    PrivateRedis,
    PrivateServer,
    parallel_worker_index,
    postgres_answers,
    private_folder,
    redis_answers,
)

# Fixtures of a real S3 endpoint: s3_server, s3_url, s3_home.
pytest_plugins = ["tests.storage_server"]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
WORKER_TOKEN = "test-worker-token-" + "x" * 16


def clear_caches() -> None:
    get_settings.cache_clear()
    clear_storage_caches()
    reset_engine_cache()
    get_celery_app.cache_clear()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database that Alembic brought to the latest schema, once per test process: a
    test's TAAS_HOME starts from a copy (migrating takes half a second, copying a millisecond;
    tests/migrations runs the migrations themselves)."""
    database = tmp_path_factory.mktemp("migrated") / "taas.db"
    migrate.upgrade(f"sqlite:///{database}")
    return database


@pytest.fixture
def taas_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_sqlite: Path
) -> Iterator[Path]:
    """A fresh TAAS_HOME with SQLite (at the latest schema), a filesystem broker and local
    artifacts inside it."""
    home = tmp_path / "taas-home"
    home.mkdir()
    shutil.copyfile(migrated_sqlite, home / "taas.db")
    for name in ("TAAS_DATABASE_URL", "TAAS_BROKER_URL", "TAAS_API_KEY", "TAAS_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAAS_HOME", str(home))
    monkeypatch.setenv("TAAS_WORKER_TOKEN", WORKER_TOKEN)
    # In-process apps reconcile only when a test asks (tests call reconcile() themselves).
    monkeypatch.setenv("TAAS_RECONCILE_SECONDS", "3600")
    # Nor do they send webhooks in the background: tests call send_due() themselves.
    monkeypatch.setenv("TAAS_WEBHOOK_SENDER", "false")
    # In-process clients send requests far faster than any over a network: rate limits are off
    # here, and on in the tests about them (and, with the defaults, in the end-to-end tests).
    monkeypatch.setenv("TAAS_RATE_LIMIT", "off")
    clear_caches()
    yield home
    clear_caches()


@pytest.fixture
def api(taas_home: Path) -> Iterator[TestClient]:
    from taas.app.main import create_app

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
def live_worker(api: TestClient, worker_auth: dict[str, str]) -> Callable[..., None]:
    """A worker the API has heard from, with 8 job slots on both queues (call it again to say
    otherwise): jobs are dispatched to the broker only for free slots of live workers."""

    def say_alive(slots: int = 8, queues: tuple[str, ...] = ("cpu", "gpu")) -> None:
        body = {"queues": list(queues), "slots": slots}
        response = api.put("/internal/v1/workers/test-worker", json=body, headers=worker_auth)
        assert response.status_code == 200, response.text

    say_alive()
    return say_alive


class SessionServers:
    """The PostgreSQL and Redis the tests use, chosen when a test first needs one:

    - the server named by TAAS_TEST_POSTGRES / TAAS_TEST_REDIS (an error if it does not answer);
    - else the one on the default local port, if it answers (as on CI machines);
    - else a private server started from a wheel, stopped when the session ends.
    """

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.started: list[PrivateServer] = []
        self.chosen: dict[str, str] = {}  # what each service is, for the session's summary
        self._postgres: str | None = None
        self._redis: str | None = None

    def postgres_admin_url(self) -> str:
        if self._postgres is None:
            self._postgres = self._choose(
                "PostgreSQL", "TAAS_TEST_POSTGRES", DEFAULT_POSTGRES_URL, postgres_answers
            )
        return self._postgres

    def redis_url(self) -> str:
        if self._redis is None:
            self._redis = self._choose("Redis", "TAAS_TEST_REDIS", DEFAULT_REDIS_URL, redis_answers)
        return self._redis

    def _choose(
        self, service: str, variable: str, default: str, answers: Callable[[str], bool]
    ) -> str:
        configured = os.environ.get(variable)
        if configured:
            if not answers(configured):
                raise RuntimeError(f"{variable}={configured!r}: no {service} answers there")
            self.chosen[service] = f"{configured} ({variable})"
            return configured
        if answers(default):
            self.chosen[service] = f"{default} (already running)"
            return default
        server = self._start_private(PrivatePostgres if service == "PostgreSQL" else PrivateRedis)
        url = server.url
        self.chosen[service] = f"{url} (private, started from a wheel: none answered at {default})"
        return url

    def _start_private(self, kind: type[PrivateServer]) -> PrivateServer:
        if self.folder is None:
            self.folder = private_folder()
        server = kind(self.folder)
        server.start()
        self.started.append(server)
        return server

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()
        self.started.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


SERVERS = SessionServers()
atexit.register(SERVERS.stop)  # also after an interrupted session (see private_servers for kill)


def postgres_admin_url() -> str:
    return SERVERS.postgres_admin_url()


def redis_url() -> str:
    return SERVERS.redis_url()


# Each test process has two Redis databases (of the server's 16; 0 is left to other users).
REDIS_DATABASES_PER_PROCESS = 2


def redis_database_url(*, shared: bool = False) -> str:
    """A Redis database of this test process's own, emptied: parallel test processes (xdist)
    each get others. ``shared`` gives the one for the deployments the process's tests share
    (tests/e2e/conftest.py), alive for the whole session; every other use gets the second. A
    worker takes any message on its queues, so a shared deployment's worker on the same
    database would take a test's own deployment's jobs (and drop them: its API has no such
    job), and emptying the database for a test would drop the shared deployment's messages."""
    number = 1 + REDIS_DATABASES_PER_PROCESS * parallel_worker_index() + int(shared)
    if number > 15:
        most = 15 // REDIS_DATABASES_PER_PROCESS
        raise RuntimeError(
            f"at most {most} parallel test processes have Redis databases of their own"
        )
    url = f"{redis_url()}/{number}"
    redis.Redis.from_url(url).flushdb()
    return url


# In a parallel session (pytest-xdist) the tests of a file here run in one process, in a row:
# they share a fixture wider than one test (a server, a run), which each process would
# otherwise start for itself. Files of one group share it between them. Every other test is a
# unit of its own, handed to whichever process is free.
RUN_TOGETHER = {
    "tests/e2e/test_jobs.py": "shared deployments",  # shared_deployment (tests/e2e/conftest.py)
    "tests/e2e/test_datasets.py": "shared deployments",
    "tests/e2e/test_sdk.py": "shared deployments",
    "tests/e2e/test_cli.py": "one taas serve",
    "tests/e2e/dashboard/test_jobs.py": "one taas serve and one browser",
    "tests/e2e/dashboard/test_pages.py": "one taas serve and one browser",
    "tests/app/artifacts/test_uploads.py": "one taas api",
    "tests/worker/trainer/test_bench.py": "one bench run",
}


class RunTogetherScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with the scopes of RUN_TOGETHER. (Its own ``--dist loadgroup``
    marks no longer group anything with pytest 9.2: pytest-xdist issue 1386.)"""

    def _split_scope(self, nodeid: str) -> str:
        return RUN_TOGETHER.get(nodeid.split("::", 1)[0], nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> RunTogetherScheduling:
    # Work goes out in the collection's order (the slow tests first, below), not by size.
    config.option.loadscopereorder = False
    return RunTogetherScheduling(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first (a stable sort keeps every other order): in a parallel session each
    process starts on one of them, and none is left to run alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # A parallel session's processes each choose their servers; each tells the main process.
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["servers chosen"] = SERVERS.chosen
    SERVERS.stop()


# What the processes of a parallel session chose, by service (the main process prints it).
CHOSEN_IN_PROCESSES: dict[str, set[str]] = {}


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: a test process has ended
def pytest_testnodedown(node: Any, error: object) -> None:
    chosen = getattr(node, "workeroutput", {}).get("servers chosen", {})
    for service, what in chosen.items():
        CHOSEN_IN_PROCESSES.setdefault(service, set()).add(what)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for service, what in SERVERS.chosen.items():
        terminalreporter.write_line(f"test {service}: {what}")
    for service, choices in sorted(CHOSEN_IN_PROCESSES.items()):
        for what in sorted(choices):
            terminalreporter.write_line(f"test {service}: {what}")


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    admin_url = postgres_admin_url()
    name = f"taas_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    with new_postgres_database() as url:
        yield url


TINY_SYNTHETIC = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 256, "test_size": 128, "shape": [1, 12, 12]},
    "training": {"epochs": 2, "batch_size": 32},
}


def epoch_progress(job: dict[str, Any]) -> dict[str, Any]:
    """The per-epoch part of a job's progress (the within-epoch fields come and go)."""
    return {key: job["progress"][key] for key in ("epoch", "epochs", "fraction")}
