"""Chaos soak: many small jobs while workers, API processes, Redis and PostgreSQL are killed.

It starts a production-like deployment of its own in a temporary folder (scripts/chaos.py): a
private PostgreSQL and a private Redis, two `taas api` processes behind a round-robin proxy, and
``--workers`` `taas worker` processes. It submits ``--jobs`` small jobs (each with its own
Idempotency-Key, retried with the same key when a request fails; all at once, or evenly over
``--spread`` seconds, so that jobs arrive through every fault) while, every ``--fault-every``
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
import contextlib
import secrets
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from scripts.chaos import (
    FAULTS,
    ChaosDeployment,
    Faults,
    chaos_deployment,
    server_errors,
)
from taas.client import Client
from taas.errors import ApiError

EPOCHS = 3
# Well under a second per epoch on a small CPU; 3 epochs, so a kill can land after a checkpoint.
SOAK_JOB: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 2000, "test_size": 200, "noise": 1.5},
    "model": {"arch": "mlp", "hidden_sizes": [64]},
    "training": {"epochs": EPOCHS, "batch_size": 64},
}
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
            f"soak: {options.jobs} jobs"
            + (f" over {options.spread:g} s" if options.spread else "")
            + f", {options.workers} workers, a fault every "
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


def submit_all(
    client: Client, count: int, spread: float, run: str, accepted: dict[int, str]
) -> None:
    """Submit ``count`` jobs into ``accepted`` (job ids by submission number), evenly over
    ``spread`` seconds; a failed request is retried with the same Idempotency-Key, so a job is
    made once however often it is sent."""
    started = time.monotonic()
    for number in range(count):
        time.sleep(max(0.0, started + spread * number / count - time.monotonic()))
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
        target=submit_all,
        args=(client, options.jobs, options.spread, run, accepted),
        name="submitter",
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
        "--spread",
        type=float,
        default=0.0,
        help="seconds over which to submit the jobs evenly (default 0: all at once)",
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
