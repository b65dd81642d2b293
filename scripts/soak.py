"""Soak test: many small jobs while workers are killed with SIGKILL every few seconds.

Not a CI test: it takes minutes and its numbers are for a person to read. It starts a
production-like deployment of its own in a temporary folder (a fresh PostgreSQL database, created
and dropped afterwards; a private `redis-server`; `taas api`; ``--workers`` `taas worker`
processes), submits ``--jobs`` small jobs (each with its own Idempotency-Key, retried with the
same key when a request fails), kills a random worker with SIGKILL every ``--kill-every`` seconds
and starts a replacement, waits until every job has ended (at most ``--timeout`` seconds), then
checks every job and prints:

    submitted   jobs the API accepted
    succeeded   / failed (by error type)
    lost        accepted but not ended at the end, or unknown to the API
    duplicated  a job with two model.safetensors, an epoch's metrics recorded twice, a job that
                succeeded twice, or more jobs than submissions (a retried POST made two)
    incomplete  a succeeded job without every epoch's metrics or without model.safetensors

plus the wall time, the kills and a histogram of attempts per job. Exits 1 when a job was lost,
duplicated or incomplete, 0 otherwise (failed jobs are reported, not fatal: a job whose worker
is killed on every attempt is meant to fail).

Run it from the repository root, with PostgreSQL on 127.0.0.1:5432 (or TAAS_TEST_POSTGRES, an
admin URL that may create databases) and `redis-server` on the PATH:

    .venv/bin/python -m scripts.soak --jobs 200 --workers 2 --kill-every 5 --timeout 900
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.client import ApiError, TaasClient
from tests.e2e.conftest import Deployment, start_production
from tests.e2e.processes import Process, free_port, start_redis

POSTGRES_ADMIN_URL = os.environ.get(
    "TAAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
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
    "dataset_options": {"train_size": 4000, "test_size": 200, "noise": 1.5},
    "model": {"arch": "mlp", "hidden_sizes": [128]},
    "training": {"epochs": EPOCHS, "batch_size": 64},
}
NOT_ENDED = ("queued", "running", "cancelling")
SUBMIT_TRIES = 10


@dataclass
class Report:
    submitted: int = 0
    succeeded: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # by error type
    lost: list[str] = field(default_factory=list)  # job ids (or submission numbers)
    duplicated: list[str] = field(default_factory=list)  # "job id: why"
    incomplete: list[str] = field(default_factory=list)  # "job id: what is missing"
    attempts: Counter[int] = field(default_factory=Counter)
    kills: int = 0
    wall_seconds: float = 0.0

    def lines(self, options: argparse.Namespace) -> list[str]:
        failed = sum(self.failed.values())
        by_type = ", ".join(f"{kind}: {count}" for kind, count in sorted(self.failed.items()))
        histogram = "  ".join(
            f"{number}: {count}" for number, count in sorted(self.attempts.items())
        )
        return [
            f"soak: {options.jobs} jobs, {options.workers} workers, a SIGKILL every "
            f"{options.kill_every:g} s ({self.kills} kills), wall {self.wall_seconds:.1f} s",
            f"submitted   {self.submitted}",
            f"succeeded   {self.succeeded}",
            f"failed      {failed}" + (f"  ({by_type})" if by_type else ""),
            f"lost        {len(self.lost)}",
            f"duplicated  {len(self.duplicated)}",
            f"incomplete  {len(self.incomplete)}",
            f"attempts    {histogram}",
            *(f"  lost: {item}" for item in self.lost[:20]),
            *(f"  duplicated: {item}" for item in self.duplicated[:20]),
            *(f"  incomplete: {item}" for item in self.incomplete[:20]),
        ]


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards (as the tests' postgres_url)."""
    name = f"taas_soak_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class WorkerKiller:
    """Every ``period`` seconds: SIGKILL a random live worker and start a replacement."""

    def __init__(self, deployment: Deployment, period: float, seed: int) -> None:
        self.deployment, self.period = deployment, period
        self.random = random.Random(seed)
        self.kills = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="soak-killer", daemon=True)

    def __enter__(self) -> WorkerKiller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        while not self.stopped.wait(self.period):
            live = self._live_workers()
            if not live:
                continue
            self.random.choice(live).kill()
            self.kills += 1
            self.deployment.start_worker(f"worker-r{self.kills}")

    def _live_workers(self) -> list[Process]:
        return [
            process
            for process in self.deployment.processes
            if process.name.startswith("worker")
            and process.popen is not None
            and process.popen.poll() is None
        ]


def submit_all(client: TaasClient, count: int, run: str) -> dict[int, str]:
    """Submit ``count`` jobs; a failed request is retried with the same Idempotency-Key, so a
    job is made once however often its request is sent. Returns job ids by submission number."""
    accepted: dict[int, str] = {}
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
    return accepted


def unfinished(client: TaasClient) -> int:
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


def wait_until_ended(client: TaasClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if unfinished(client) == 0:
                return
        except (httpx.TransportError, ApiError):
            pass  # the API is busy; ask again
        time.sleep(3)


def all_job_ids(client: TaasClient) -> list[str]:
    ids, cursor = [], None
    while True:
        page = client.jobs(limit=100, cursor=cursor)
        ids += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def check_job(client: TaasClient, job_id: str, report: Report) -> None:
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


def soak(deployment: Deployment, options: argparse.Namespace) -> Report:
    report = Report()
    started = time.monotonic()
    run = secrets.token_hex(4)
    with TaasClient(deployment.api_url, deployment.create_key("soak"), timeout=60) as client:
        with WorkerKiller(deployment, options.kill_every, options.seed) as killer:
            accepted = submit_all(client, options.jobs, run)
            print(f"soak: {len(accepted)} jobs accepted; waiting for them to end", flush=True)
            wait_until_ended(client, started + options.timeout)
        report.kills = killer.kills
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


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.soak", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--jobs", type=int, default=200, help="jobs to submit (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="live workers (default 2)")
    parser.add_argument(
        "--kill-every", type=float, default=5.0, help="seconds between SIGKILLs (default 5)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for every job (default 900)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which workers get killed")
    parser.add_argument("--postgres", default=POSTGRES_ADMIN_URL, help="admin URL of PostgreSQL")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    with (
        tempfile.TemporaryDirectory(prefix="taas-soak-") as folder,
        fresh_database(options.postgres) as database_url,
    ):
        workdir = Path(folder)
        port = free_port()
        broker = start_redis(workdir, port)
        deployment: Deployment | None = None
        try:
            deployment = start_production(
                workdir,
                database_url,
                broker_url=f"redis://127.0.0.1:{port}/0",
                workers=options.workers,
                **SOAK_SETTINGS,
            )
            report = soak(deployment, options)
        finally:
            if deployment is not None:
                deployment.stop()
            broker.stop(signal.SIGTERM)
    print("\n".join(report.lines(options)), flush=True)
    return 1 if report.lost or report.duplicated or report.incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
