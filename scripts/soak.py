"""Chaos soak: many small jobs while workers, API processes, Redis and PostgreSQL are killed.

It starts a production-like deployment of its own in a temporary folder: a private PostgreSQL and
a private Redis (from the test extras' wheels), `taas migrate`, two `taas api` processes behind a
small round-robin proxy that the workers and the submitter talk to (as a load balancer would), and
``--workers`` `taas worker` processes. It submits ``--jobs`` small jobs (each with its own
Idempotency-Key, retried with the same key when a request fails) while, every ``--fault-every``
seconds, one of the enabled ``--faults`` happens:

    worker    SIGKILL a random worker, start a replacement
    api       SIGKILL one of the two API processes, start it again ``--api-down`` seconds later
    redis     SIGKILL Redis and start it again empty (it keeps nothing on disk: messages lost)
    postgres  stop PostgreSQL (fast shutdown), start it again ``--postgres-down`` seconds later

Then it waits until every job has ended (at most ``--timeout`` seconds), checks every job and
prints the faults with their times and:

    submitted   jobs the API accepted
    succeeded   / failed (by error type)
    lost        accepted but not ended at the end, or unknown to the API
    duplicated  a job with two model.safetensors, an epoch's metrics recorded twice, a job that
                succeeded twice, or more jobs than submissions (a retried POST made two)
    incomplete  a succeeded job without every epoch's metrics or without model.safetensors
    latency     p50 / p95 of submit -> succeeded (the job's created_at -> finished_at)

Exits 1 when a job was lost, duplicated or incomplete, 0 otherwise (failed jobs are reported, not
fatal: a job whose worker is killed on every attempt is meant to fail). Nothing but Python and the
test extras is needed. From the repository root:

    .venv/bin/python -m scripts.soak --jobs 1000 --workers 2 --fault-every 5 --timeout 3600
    .venv/bin/python -m scripts.soak --faults worker --jobs 200      # worker kills only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import secrets
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx

from taas.client import Client
from taas.errors import ApiError
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
SOAK_SETTINGS = {
    "TAAS_LEASE_SECONDS": "5",
    "TAAS_RECONCILE_SECONDS": "1",
    "TAAS_REQUEUE_AFTER_SECONDS": "5",
    "TAAS_HEARTBEAT_SECONDS": "1",
}
EPOCHS = 3
# Well under a second per epoch on a small CPU; 3 epochs, so a kill can land after a checkpoint.
SOAK_JOB: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 2000, "test_size": 200, "noise": 1.5},
    "model": {"arch": "mlp", "hidden_sizes": [64]},
    "training": {"epochs": EPOCHS, "batch_size": 64},
}
ROUTE_IDS = re.compile(r"(job|ds)_[0-9a-f]+|/attempts/\d+")
NOT_ENDED = ("queued", "running", "cancelling")
SUBMIT_TRIES = 30
PROGRESS_EVERY_SECONDS = 30.0


@dataclass
class Report:
    submitted: int = 0
    succeeded: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # by error type
    lost: list[str] = field(default_factory=list)  # job ids (or submission numbers)
    duplicated: list[str] = field(default_factory=list)  # "job id: why"
    incomplete: list[str] = field(default_factory=list)  # "job id: what is missing"
    attempts: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # created -> finished, succeeded jobs
    faults: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, kind, what)
    server_errors: list[str] = field(default_factory=list)  # "log: line" of 500s and tracebacks
    wall_seconds: float = 0.0

    @property
    def fault_counts(self) -> Counter[str]:
        return Counter(kind for _, kind, _ in self.faults)

    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.incomplete or self.server_errors)

    def latency_line(self) -> str:
        if len(self.latencies) < 2:
            return "n/a"
        quantiles = statistics.quantiles(self.latencies, n=20, method="inclusive")
        return f"p50 {statistics.median(self.latencies):.1f} s, p95 {quantiles[18]:.1f} s"

    def lines(self, options: argparse.Namespace) -> list[str]:
        failed = sum(self.failed.values())
        by_type = ", ".join(f"{kind}: {count}" for kind, count in sorted(self.failed.items()))
        histogram = "  ".join(f"{n}: {count}" for n, count in sorted(self.attempts.items()))
        faults = ", ".join(f"{kind} {self.fault_counts[kind]}" for kind in options.faults)
        return [
            *(f"  {at:7.1f} s  {kind:<8} {what}" for at, kind, what in self.faults),
            f"soak: {options.jobs} jobs, {options.workers} workers, a fault every "
            f"{options.fault_every:g} s ({faults}), wall {self.wall_seconds:.1f} s",
            f"submitted   {self.submitted}",
            f"succeeded   {self.succeeded}",
            f"failed      {failed}" + (f"  ({by_type})" if by_type else ""),
            f"lost        {len(self.lost)}",
            f"duplicated  {len(self.duplicated)}",
            f"incomplete  {len(self.incomplete)}",
            f"attempts    {histogram}",
            f"latency     {self.latency_line()} (submit -> succeeded)",
            f"server errors {sum(int(item.split(' x ')[0]) for item in self.server_errors)}"
            "  (answers 500 and tracebacks in the logs)",
            *(f"  lost: {item}" for item in self.lost[:20]),
            *(f"  duplicated: {item}" for item in self.duplicated[:20]),
            *(f"  incomplete: {item}" for item in self.incomplete[:20]),
            *(f"  server error: {item}" for item in self.server_errors[:20]),
        ]


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
        **SOAK_SETTINGS,
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


def submit_all(client: Client, count: int, run: str, accepted: dict[int, str]) -> None:
    """Submit ``count`` jobs into ``accepted`` (job ids by submission number); a failed request is
    retried with the same Idempotency-Key, so a job is made once however often it is sent."""
    for number in range(count):
        key = f"soak-{run}-{number}"
        for _ in range(SUBMIT_TRIES):
            try:
                accepted[number] = client.submit(SOAK_JOB, idempotency_key=key)["id"]
                break
            except (httpx.TransportError, ApiError) as error:
                if isinstance(error, ApiError) and error.status_code < 500:
                    raise
                time.sleep(1)


def unfinished(client: Client) -> int:
    """How many of the tenant's jobs have not ended yet."""
    total = 0
    for status in NOT_ENDED:
        cursor = None
        while True:
            page = client.jobs(status=status, limit=100, cursor=cursor)
            total += len(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    return total


def all_ended(client: Client) -> bool:
    try:
        return unfinished(client) == 0
    except (httpx.TransportError, ApiError):
        return False  # a fault is under way; ask again later


def print_progress(client: Client, accepted: int, started: float) -> None:
    with contextlib.suppress(httpx.TransportError, ApiError):
        waiting = unfinished(client)
        print(
            f"soak: {time.monotonic() - started:7.1f} s  {accepted} accepted, "
            f"{accepted - waiting} ended",
            flush=True,
        )


def all_job_ids(client: Client) -> list[str]:
    ids, cursor = [], None
    while True:
        page = client.jobs(limit=100, cursor=cursor)
        ids += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def check_job(client: Client, job_id: str, report: Report) -> None:
    """Count the job's outcome, and flag anything done twice."""
    try:
        job = client.job(job_id)
    except ApiError as error:
        if error.status_code != 404:
            raise
        report.lost.append(f"{job_id}: unknown to the API")
        return
    report.attempts[job["attempt"]] += 1
    if job["status"] in NOT_ENDED:
        report.lost.append(f"{job_id}: still {job['status']} (attempt {job['attempt']})")
        return
    if job["status"] == "succeeded":
        report.succeeded += 1
        created, finished = (
            datetime.fromisoformat(job[key]) for key in ("created_at", "finished_at")
        )
        report.latencies.append((finished - created).total_seconds())
    else:
        report.failed[(job["error"] or {}).get("type") or job["status"]] += 1
    epochs = Counter(point["epoch"] for point in client.metrics(job_id))
    twice = sorted(epoch for epoch, count in epochs.items() if count > 1)
    if twice:
        report.duplicated.append(f"{job_id}: metrics of epochs {twice} recorded twice")
    names = Counter(item["name"] for item in client.artifacts(job_id))
    if names["model.safetensors"] > 1:
        report.duplicated.append(f"{job_id}: {names['model.safetensors']} model.safetensors")
    endings = [event["status"] for event in client.events(job_id) if event["status"]]
    if endings.count("succeeded") > 1:
        report.duplicated.append(f"{job_id}: succeeded {endings.count('succeeded')} times")
    if job["status"] == "succeeded":
        missing = sorted(set(range(1, EPOCHS + 1)) - set(epochs))
        if missing or names["model.safetensors"] == 0:
            report.incomplete.append(f"{job_id}: epochs {missing} missing, {dict(names)}")


def run_with_faults(
    chaos: ChaosDeployment, client: Client, options: argparse.Namespace
) -> tuple[dict[int, str], list[tuple[float, str, str]]]:
    """Submit in a thread while this thread injects faults, until every job ended or the
    timeout. Returns the accepted job ids and the faults."""
    accepted: dict[int, str] = {}
    run = secrets.token_hex(4)
    submitter = threading.Thread(
        target=submit_all, args=(client, options.jobs, run, accepted), name="submitter"
    )
    faults = Faults(chaos, options)
    deadline = faults.started + options.timeout
    next_fault = faults.started + options.fault_every
    submitter.start()
    next_progress = faults.started + PROGRESS_EVERY_SECONDS
    while time.monotonic() < deadline:
        if not submitter.is_alive() and all_ended(client):
            break
        if time.monotonic() >= next_progress:
            print_progress(client, len(accepted), faults.started)
            next_progress += PROGRESS_EVERY_SECONDS
        if options.faults and time.monotonic() >= next_fault:
            faults.inject()
            next_fault = time.monotonic() + options.fault_every
        time.sleep(0.5)
    submitter.join(timeout=60)
    return accepted, faults.log


def soak(chaos: ChaosDeployment, options: argparse.Namespace) -> Report:
    report = Report()
    started = time.monotonic()
    key = chaos.deployment.create_key("soak")
    with Client(chaos.api_url, key, timeout=60) as client:
        accepted, report.faults = run_with_faults(chaos, client, options)
        print(f"soak: {len(accepted)} jobs accepted; checking them", flush=True)
        report.wall_seconds = time.monotonic() - started
        report.submitted = len(accepted)
        report.lost += [
            f"submission {n}: never accepted" for n in range(options.jobs) if n not in accepted
        ]
        for job_id in accepted.values():
            check_job(client, job_id, report)
        extra = len(all_job_ids(client)) - len(set(accepted.values()))
        if extra > 0:
            report.duplicated.append(f"{extra} jobs more than submissions")
    return report


def fault_list(text: str) -> list[str]:
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - set(FAULTS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown faults {unknown}; choose from {FAULTS}")
    return kinds


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.soak", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--jobs", type=int, default=200, help="jobs to submit (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="live workers (default 2)")
    parser.add_argument(
        "--faults",
        type=fault_list,
        default=list(FAULTS),
        help=f"comma-separated, from {','.join(FAULTS)} (default all); '' for none",
    )
    parser.add_argument(
        "--fault-every", type=float, default=5.0, help="seconds between faults (default 5)"
    )
    parser.add_argument("--api-down", type=float, default=2.0, help="seconds an API stays dead")
    parser.add_argument(
        "--postgres-down", type=float, default=2.0, help="seconds PostgreSQL stays stopped"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for every job (default 900)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which faults, in which order")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep every process's log (path printed)"
    )
    return parser.parse_args(argv)


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


def run_soak(options: argparse.Namespace) -> Report:
    with chaos_deployment(options.workers, options.keep_logs) as chaos:
        report = soak(chaos, options)
        chaos.deployment.stop()
        report.server_errors = server_errors(chaos.deployment.home.parent)
        return report


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    report = run_soak(options)
    print("\n".join(report.lines(options)), flush=True)
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
