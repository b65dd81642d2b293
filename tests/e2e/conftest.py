"""Deployments for end-to-end tests, each a real server over real HTTP.

- embedded: one `taas serve` (SQLite, filesystem broker, its own worker process);
- production: `taas migrate`, `taas api` and `taas worker` on PostgreSQL and Redis.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.e2e.processes import Process, base_env, free_port, taas_command, wait_until_healthy


@dataclass
class Deployment:
    kind: str
    api_url: str
    home: Path
    env: dict[str, str]
    processes: list[Process]

    def create_key(self, tenant: str) -> str:
        command = taas_command("keys", "create", "--tenant", tenant)
        output = Process("keys", command, self.env, self.home.parent).run()
        return output.strip().splitlines()[-1]

    def logs(self) -> str:
        return "\n".join(
            f"--- {process.name}\n{process.log()[-6000:]}" for process in self.processes
        )


def start_embedded(workdir: Path) -> Deployment:
    home, port = workdir / "home", free_port()
    env = base_env(home, TAAS_HEARTBEAT_SECONDS="0.5")
    serve = Process("serve", taas_command("serve", "--port", str(port)), env, workdir).start()
    api_url = f"http://127.0.0.1:{port}"
    wait_until_healthy(api_url, [serve])
    env["TAAS_API_URL"] = api_url
    return Deployment("embedded", api_url, home, env, [serve])


def start_production(workdir: Path, database_url: str) -> Deployment:
    home, port = workdir / "home", free_port()
    home.mkdir(parents=True)
    database = secrets.randbelow(14) + 1  # a Redis database of our own, emptied first
    broker_url = f"{REDIS_URL}/{database}"
    redis.Redis.from_url(broker_url).flushdb()
    api_url = f"http://127.0.0.1:{port}"
    env = base_env(
        home,
        TAAS_ENVIRONMENT="production",
        TAAS_DATABASE_URL=database_url,
        TAAS_BROKER_URL=broker_url,
        TAAS_WORKER_TOKEN=secrets.token_urlsafe(32),
        TAAS_API_URL=api_url,
        TAAS_HEARTBEAT_SECONDS="0.5",
    )
    Process("migrate", taas_command("migrate"), env, workdir).run()
    api = Process("api", taas_command("api", "--port", str(port)), env, workdir).start()
    worker = Process("worker", taas_command("worker", "--queues", "cpu,gpu"), env, workdir).start()
    wait_until_healthy(api_url, [api, worker])
    return Deployment("production", api_url, home, env, [api, worker])


@pytest.fixture(params=["embedded", "production"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if request.param == "embedded":
        started = start_embedded(tmp_path)
    else:
        started = start_production(tmp_path, request.getfixturevalue("postgres_url"))
    yield started
    for process in reversed(started.processes):
        process.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(started.logs())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # type: ignore[attr-defined]
    return report
