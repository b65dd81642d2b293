"""Deployments for end-to-end tests, each a real server over real HTTP.

- embedded: one `taas serve` (SQLite, filesystem broker, its own worker process);
- production: `taas api` and `taas worker` on PostgreSQL and Redis, the schema made as `taas
  migrate` makes it (in this process: tests/e2e/test_observability.py runs the command).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from taas.app.auth.service import create_api_key
from taas.app.core import migrate
from taas.app.core.config import Settings
from taas.app.core.db import make_engine
from tests.conftest import redis_database_url
from tests.e2e.processes import Process, base_env, free_port, taas_command, wait_until_healthy


@dataclass
class Deployment:
    kind: str
    api_url: str
    home: Path
    env: dict[str, str]
    processes: list[Process]

    def create_key(self, tenant: str) -> str:
        """An admin key for ``tenant``, written to the deployment's database as `taas keys create
        --tenant` does, but from this process: a `taas` process per key would spend seconds
        importing (tests/app/cli/test_database_errors.py runs the command itself)."""
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as session, session.begin():
                return create_api_key(session, tenant)
        finally:
            engine.dispose()

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
