"""The deployment the chaos soak (scripts/soak.py) runs against, and the faults it suffers.

A private PostgreSQL and a private Redis (from the test extras' wheels), `taas migrate`, two
`taas api` processes behind a small round-robin proxy that the workers and the submitter talk to
(as a load balancer would), and `taas worker` processes; every part can be killed and started
again. Afterwards, every process's log is read for answers 500 and tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

from tests.e2e.conftest import Deployment
from tests.e2e.processes import Process, base_env, free_port, taas_command, wait_until_healthy
from tests.private_servers import (
    PrivatePostgres,
    PrivateRedis,
    PrivateServer,
    private_folder,
)

FAULTS = ("worker", "api", "redis", "postgres")
# A lost worker is noticed 5 s after its last heartbeat; an unclaimed job is re-sent after 5 s.
CHAOS_SETTINGS = {
    "TAAS_LEASE_SECONDS": "5",
    "TAAS_RECONCILE_SECONDS": "1",
    "TAAS_REQUEUE_AFTER_SECONDS": "5",
    "TAAS_HEARTBEAT_SECONDS": "1",
}
ROUTE_IDS = re.compile(r"(job|ds)_[0-9a-f]+|/attempts/\d+")


class RoundRobinProxy:
    """A TCP proxy on 127.0.0.1 that hands each new connection to the next backend port that
    accepts it, as a load balancer in front of several `taas api` processes does. A connection
    to a backend that dies is cut, and the client's next connection goes to a live one."""

    def __init__(self, backends: list[int]) -> None:
        self.port = free_port()
        self.backends = cycle(backends)
        self.count = len(backends)
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True)

    def start(self) -> None:
        self.thread.start()
        opening = asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.server = asyncio.run_coroutine_threadsafe(opening, self.loop).result(timeout=10)

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        self.loop.close()

    async def _close(self) -> None:
        """Stop listening and cut the connections still open."""
        if self.server is not None:
            self.server.close()
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        for _ in range(self.count):
            with contextlib.suppress(OSError):
                backend_in, backend_out = await asyncio.open_connection(
                    "127.0.0.1", next(self.backends)
                )
                break
        else:
            client_out.close()  # no backend answers: the client sees a refused request
            return
        await asyncio.gather(_pipe(client_in, backend_out), _pipe(backend_in, client_out))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass  # either side went away: close the other
    finally:
        sink.close()


@dataclass
class ChaosDeployment:
    """Two API processes behind a proxy, workers, and the servers they use, all killable."""

    deployment: Deployment
    postgres: PrivatePostgres
    redis: PrivateRedis
    proxy: RoundRobinProxy
    api_ports: list[int]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    def live_workers(self) -> list[Process]:
        return [
            process
            for process in self.deployment.processes
            if process.name.startswith("worker")
            and process.popen is not None
            and process.popen.poll() is None
        ]


def start_deployment(folder: Path, chaos: ChaosDeployment, workers: int) -> None:
    """`taas migrate`, two `taas api` behind the proxy and ``workers`` `taas worker`."""
    home = folder / "home"
    home.mkdir()
    settings = {
        "TAAS_ENVIRONMENT": "production",
        "TAAS_DATABASE_URL": chaos.postgres.url.replace("postgresql://", "postgresql+psycopg://"),
        "TAAS_BROKER_URL": f"{chaos.redis.url}/0",
        "TAAS_WORKER_TOKEN": secrets.token_urlsafe(32),
        "TAAS_API_URL": chaos.api_url,
        **CHAOS_SETTINGS,
    }
    env = base_env(home, **settings)
    Process("migrate", taas_command("migrate"), env, folder).run()
    chaos.deployment.env, chaos.deployment.home = env, home
    for number, port in enumerate(chaos.api_ports, start=1):
        chaos.deployment.start_api(f"api-{number}", port=port)
    for number in range(1, workers + 1):
        chaos.deployment.start_worker(f"worker-{number}")
    wait_until_healthy(chaos.api_url, chaos.deployment.processes)


@contextlib.contextmanager
def chaos_deployment(workers: int, keep_logs: bool = False) -> Iterator[ChaosDeployment]:
    """Everything in a private temporary folder; all of it stopped, and the folder removed
    unless ``keep_logs``, at the end."""
    folder = private_folder()
    with contextlib.ExitStack() as stack:
        if keep_logs:
            stack.callback(print, f"soak: logs kept in {folder}", flush=True)
        else:
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
        api_ports = [free_port(), free_port()]
        chaos = ChaosDeployment(
            Deployment("production", "", folder, {}, []),
            PrivatePostgres(folder),
            PrivateRedis(folder),
            RoundRobinProxy(api_ports),
            api_ports,
        )
        for part in (chaos.postgres, chaos.redis, chaos.proxy):
            stack.callback(part.stop)
            part.start()
        chaos.deployment.api_url = chaos.api_url
        stack.callback(chaos.deployment.stop)  # workers first, then the APIs
        start_deployment(folder, chaos, workers)
        yield chaos


class Faults:
    """Injects one random enabled fault each time ``inject`` is called and records it. Runs in
    the thread that started the servers: they are tied to it (see tests.private_servers)."""

    def __init__(self, chaos: ChaosDeployment, options: argparse.Namespace) -> None:
        self.chaos, self.options = chaos, options
        self.random = random.Random(options.seed)
        self.started = time.monotonic()
        self.log: list[tuple[float, str, str]] = []
        self.replacements = 0
        self.round: list[str] = []
        self.actions: dict[str, Callable[[], str]] = {
            "worker": self.kill_worker,
            "api": self.kill_api,
            "redis": self.restart_redis,
            "postgres": self.restart_postgres,
        }

    def next_kind(self) -> str:
        """Each enabled fault once per round, in a random order, so a short run has them all."""
        if not self.round:
            self.round = self.random.sample(self.options.faults, len(self.options.faults))
        return self.round.pop()

    def inject(self) -> None:
        kind = self.next_kind()
        at = time.monotonic() - self.started
        what = self.actions[kind]()
        self.log.append((at, kind, what))
        print(f"soak: {at:7.1f} s  {kind:<8} {what}", flush=True)

    def kill_worker(self) -> str:
        live = self.chaos.live_workers()
        if not live:
            return "no live worker"
        victim = self.random.choice(live)
        victim.kill()
        self.replacements += 1
        self.chaos.deployment.start_worker(f"worker-r{self.replacements}")
        return f"SIGKILL {victim.name}, started worker-r{self.replacements}"

    def kill_api(self) -> str:
        number = self.random.randrange(len(self.chaos.api_ports))
        name, port = f"api-{number + 1}", self.chaos.api_ports[number]
        for process in self.chaos.deployment.processes:
            if process.name == name and process.popen is not None and process.popen.poll() is None:
                process.kill()
        time.sleep(self.options.api_down)
        self.chaos.deployment.start_api(name, port=port)
        return f"SIGKILL {name}, started again after {self.options.api_down:g} s"

    def restart_redis(self) -> str:
        self.chaos.redis.kill()
        self.chaos.redis.start()
        return "SIGKILL, started again empty"

    def restart_postgres(self) -> str:
        return restart(self.chaos.postgres, self.options.postgres_down)


def restart(server: PrivateServer, down_seconds: float) -> str:
    began = time.monotonic()
    server.stop()
    time.sleep(down_seconds)
    server.start()
    return f"stopped, answering again after {time.monotonic() - began:.1f} s"


def server_errors(folder: Path) -> list[str]:
    """Answers 500 (uvicorn's access log) and tracebacks in every process's log, counted by kind:
    a fault must be answered with a retryable status, never an internal error."""
    found: Counter[str] = Counter()
    for log in sorted(folder.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        for number, line in enumerate(lines):
            if '" 500 ' in line:
                request = line.split('"')[1].split(" HTTP")[0] if line.count('"') >= 2 else line
                found[f"{log.stem}: 500 on {ROUTE_IDS.sub('*', request)}"] += 1
            elif line.startswith("Traceback"):
                found[f"{log.stem}: {exception_line(lines, number)}"] += 1
    return [f"{count} x {what}" for what, count in found.most_common()]


def exception_line(lines: list[str], start: int) -> str:
    """The exception that ends the traceback starting at ``lines[start]``."""
    for line in lines[start + 1 :]:
        if line and not line.startswith((" ", "Traceback")):
            return line.strip()[:200]
    return "traceback without an exception line"
