"""Deployments for end-to-end tests, each a real server over real HTTP.

- embedded: one `taas serve` (SQLite, filesystem broker, its own worker process);
- production: `taas api` and `taas worker` on PostgreSQL and Redis, the schema made as `taas
  migrate` makes it (in this process: tests/e2e/test_observability.py runs the command).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from taas.app.auth.service import create_api_key
from taas.app.core import migrate
from taas.app.core.config import Settings
from taas.app.core.db import make_engine
from taas.client import Client
from tests.conftest import new_postgres_database, redis_database_url
from tests.e2e.processes import Process, base_env, free_port, taas_command, wait_until_healthy

UNFINISHED = ("queued", "running", "cancelling")


@dataclass
class Deployment:
    kind: str
    api_url: str
    home: Path
    env: dict[str, str]
    processes: list[Process]
    # A deployment shared by several tests gives each its own tenants: "acme" becomes
    # "acme-<suffix>", and the keys made are kept to find the test's jobs afterwards.
    tenant_suffix: str = ""
    keys: list[str] = field(default_factory=list)

    def create_key(self, tenant: str) -> str:
        """An admin key for ``tenant``, written to the deployment's database as `taas keys create
        --tenant` does, but from this process: a `taas` process per key would spend seconds
        importing (tests/app/cli/test_database_errors.py runs the command itself)."""
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as session, session.begin():
                key = create_api_key(session, tenant + self.tenant_suffix)
        finally:
            engine.dispose()
        self.keys.append(key)
        return key

    def end_unfinished_jobs(self, timeout: float = 60.0) -> None:
        """Cancel the jobs of the keys this view made that have not ended, and wait until every
        one has."""
        for key in self.keys:
            with Client(self.api_url, key) as client:
                for job in client.jobs(limit=100)["items"]:
                    if job["status"] in ("queued", "running"):
                        client.cancel(job["id"])
                deadline = time.monotonic() + timeout
                while any(job["status"] in UNFINISHED for job in client.jobs(limit=100)["items"]):
                    assert time.monotonic() < deadline, f"jobs did not end\n{self.logs()}"
                    time.sleep(0.2)

    @property
    def database_url(self) -> str:
        configured = self.env.get("TAAS_DATABASE_URL")
        return Settings(home=self.home, database_url=configured).resolved_database_url

    @property
    def port(self) -> int:
        return int(self.api_url.rsplit(":", 1)[1])

    def logs(self) -> str:
        logs = [f"--- {process.name}\n{process.log()[-6000:]}" for process in self.processes]
        worker_log = self.home / "logs" / "worker.log"  # `taas serve`'s worker writes there
        if worker_log.exists():
            logs.append(f"--- worker.log\n{worker_log.read_text(errors='replace')[-6000:]}")
        return "\n".join(logs)

    def start_api(self, name: str = "api", port: int | None = None) -> Process:
        """`taas api` on this deployment's port, or ``port`` (again, after it was killed)."""
        command = taas_command("api", "--port", str(port or self.port))
        return self._start(Process(name, command, self.env, self.home.parent))

    def start_worker(self, name: str = "worker", *options: str) -> Process:
        command = taas_command("worker", "--queues", "cpu,gpu", *options)
        return self._start(Process(name, command, self.env, self.home.parent))

    def _start(self, process: Process) -> Process:
        self.processes.append(process)  # stopped with the deployment
        return process.start()

    def stop(self) -> None:
        """Workers first, while the API still answers: a worker stopped mid-job gives it back."""
        workers_first = sorted(
            reversed(self.processes), key=lambda process: not process.name.startswith("worker")
        )
        for process in workers_first:
            process.stop()


def start_embedded(workdir: Path, **extra_env: str) -> Deployment:
    """`taas serve`; ``extra_env`` adds or overrides TAAS_ settings (short leases, say)."""
    home, port = workdir / "home", free_port()
    env = base_env(home, **{"TAAS_HEARTBEAT_SECONDS": "0.5", **extra_env})
    serve = Process("serve", taas_command("serve", "--port", str(port)), env, workdir).start()
    api_url = f"http://127.0.0.1:{port}"
    wait_until_healthy(api_url, [serve])
    env["TAAS_API_URL"] = api_url
    return Deployment("embedded", api_url, home, env, [serve])


def start_production(
    workdir: Path,
    database_url: str,
    *,
    broker_url: str | None = None,
    workers: int = 1,
    **extra_env: str,
) -> Deployment:
    """The schema, `taas api` and ``workers`` `taas worker` processes. Without
    ``broker_url``, a Redis database of the shared server, emptied first."""
    home, port = workdir / "home", free_port()
    home.mkdir(parents=True)
    if broker_url is None:
        broker_url = redis_database_url()
    api_url = f"http://127.0.0.1:{port}"
    settings = {
        "TAAS_ENVIRONMENT": "production",
        "TAAS_DATABASE_URL": database_url,
        "TAAS_BROKER_URL": broker_url,
        "TAAS_WORKER_TOKEN": secrets.token_urlsafe(32),
        "TAAS_API_URL": api_url,
        "TAAS_HEARTBEAT_SECONDS": "0.5",
    }
    env = base_env(home, **{**settings, **extra_env})
    migrate.upgrade(database_url)
    deployment = Deployment("production", api_url, home, env, [])
    deployment.start_api()
    for number in range(1, workers + 1):
        deployment.start_worker("worker" if number == 1 else f"worker-{number}")
    wait_until_healthy(api_url, deployment.processes)
    return deployment


class SharedDeployments:
    """One deployment of each kind for this test process, started when a test first asks."""

    def __init__(self, folders: pytest.TempPathFactory) -> None:
        self.folders = folders
        self.started: dict[str, Deployment] = {}
        self.databases = contextlib.ExitStack()

    def get(self, kind: str) -> Deployment:
        if kind not in self.started:
            folder = self.folders.mktemp(f"shared-{kind}")
            if kind == "embedded":
                self.started[kind] = start_embedded(folder)
            else:
                database_url = self.databases.enter_context(new_postgres_database())
                broker_url = redis_database_url(shared=True)
                self.started[kind] = start_production(folder, database_url, broker_url=broker_url)
        return self.started[kind]

    def stop(self) -> None:
        for deployment in self.started.values():
            deployment.stop()
        self.databases.close()


@pytest.fixture(scope="session")
def shared_deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedDeployments]:
    shared = SharedDeployments(tmp_path_factory)
    yield shared
    shared.stop()


@pytest.fixture(params=["embedded", "production"])
def shared_deployment(
    request: pytest.FixtureRequest, shared_deployments: SharedDeployments
) -> Iterator[Deployment]:
    """A deployment that other tests of this process use too, for tests that only submit and
    read jobs: each test gets tenants of its own, and its unfinished jobs are cancelled and
    waited for afterwards, so that the next test finds the worker idle. A test that kills
    processes, changes settings or counts what is queued uses ``deployment``."""
    view = replace(
        shared_deployments.get(request.param), tenant_suffix=f"-{secrets.token_hex(4)}", keys=[]
    )
    yield view
    view.end_unfinished_jobs()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(view.logs())


@pytest.fixture(params=["embedded", "production"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if request.param == "embedded":
        started = start_embedded(tmp_path)
    else:
        started = start_production(tmp_path, request.getfixturevalue("postgres_url"))
    yield started
    started.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(started.logs())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # type: ignore[attr-defined]
    return report
