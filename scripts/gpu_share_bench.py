"""Measure several small jobs per GPU: the same batch of jobs on one worker, once per
``--jobs-per-gpu`` value, one after the other in one run on this machine.

Each round starts a fresh deployment (`taas migrate`, `taas api`, and `taas worker --gpus G
--jobs-per-gpu N`, SQLite and the filesystem broker in a temporary TAAS_HOME), submits the jobs
(the reference 784-128-10 MLP on Fashion-MNIST by default) and waits for all of them. It prints,
per round: total wall time (first submit to last job ended), the most jobs seen running at once
(from the jobs' own start and end times), the median job run time, and the ratio to the first
round. From the repository root, on a machine with a GPU:

    .venv/bin/python -m scripts.gpu_share_bench --jobs 16 --per-gpu 1,4

Without a GPU, ``--device cpu`` runs the same rounds with `taas worker --concurrency N`: a smoke
run of this script, not a measurement of GPU sharing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.processes import Process, base_env, free_port, taas_command, wait_until_healthy

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Round:
    per_gpu: int
    wall_seconds: float
    statuses: Counter[str]
    most_at_once: int
    median_run_seconds: float


@contextlib.contextmanager
def deployment(home: Path, worker_options: list[str]) -> Iterator[httpx.Client]:
    """API and one worker on a fresh TAAS_HOME; yields a client with a key."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    env = base_env(
        home,
        TAAS_WORKER_TOKEN=secrets.token_urlsafe(32),
        TAAS_API_URL=api_url,
        TAAS_HEARTBEAT_SECONDS="0.5",
    )
    home.mkdir(parents=True)
    Process("migrate", taas_command("migrate"), env, home).run()
    key = Process("keys", taas_command("keys", "create", "--tenant", "bench"), env, home).run()
    api = Process("api", taas_command("api", "--port", str(port)), env, home).start()
    worker_command = taas_command("worker", "--queues", "cpu,gpu", *worker_options)
    worker = Process("worker", worker_command, env, home).start()
    try:
        wait_until_healthy(api_url, [api, worker])
        headers = {"Authorization": f"Bearer {key.strip().splitlines()[-1]}"}
        with httpx.Client(base_url=api_url, headers=headers, timeout=60) as client:
            yield client
    finally:
        worker.stop()  # first, while the API still answers
        api.stop()


def run_round(client: httpx.Client, spec: dict[str, Any], jobs: int, timeout: float) -> list[Any]:
    """Submit ``jobs`` copies of ``spec`` and wait until every one has ended."""
    ids = []
    for number in range(jobs):
        response = client.post("/v1/jobs", json={**spec, "name": f"share-{number}"})
        response.raise_for_status()
        ids.append(response.json()["id"])
    deadline = time.monotonic() + timeout
    while True:
        ended = [client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
        if all(job["status"] in TERMINAL for job in ended):
            return ended
        if time.monotonic() > deadline:
            raise SystemExit(f"not every job ended within {timeout:.0f} s")
        time.sleep(1)


def summarize(per_gpu: int, jobs: list[dict[str, Any]]) -> Round:
    created = min(datetime.fromisoformat(job["created_at"]) for job in jobs)
    spans = [
        (datetime.fromisoformat(job["started_at"]), datetime.fromisoformat(job["finished_at"]))
        for job in jobs
        if job["started_at"] and job["finished_at"]
    ]
    ended = max(datetime.fromisoformat(job["finished_at"]) for job in jobs)
    return Round(
        per_gpu=per_gpu,
        wall_seconds=(ended - created).total_seconds(),
        statuses=Counter(job["status"] for job in jobs),
        most_at_once=most_at_once(spans),
        median_run_seconds=statistics.median((end - start).total_seconds() for start, end in spans)
        if spans
        else 0.0,
    )


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans that overlap at one moment (an end before a start at the same instant)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in edges:
        running += change
        most = max(most, running)
    return most


def job_spec(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((EXAMPLES / "reference_mlp.json").read_text())
    spec["device"] = args.device
    spec["dataset"] = args.dataset
    if args.dataset == "synthetic":
        spec["dataset_options"] = {"train_size": 2000, "test_size": 200}
    spec["training"] = {**spec.get("training", {}), "epochs": args.epochs}
    return spec


def worker_options(args: argparse.Namespace, per_gpu: int) -> list[str]:
    if args.device == "cpu":
        return ["--concurrency", str(per_gpu)]
    return ["--gpus", args.gpu, "--jobs-per-gpu", str(per_gpu)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.gpu_share_bench")
    parser.add_argument("--jobs", type=int, default=16, help="jobs per round; default 16")
    parser.add_argument("--per-gpu", default="1,4", help="--jobs-per-gpu per round; default 1,4")
    parser.add_argument("--gpu", default="0", help="the GPU id the worker gets; default 0")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument(
        "--dataset", choices=["fashion_mnist", "synthetic"], default="fashion_mnist"
    )
    parser.add_argument("--epochs", type=int, default=3, help="per job; default 3")
    parser.add_argument("--timeout", type=float, default=1800, help="per round, seconds")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    spec = job_spec(args)
    rounds = []
    for per_gpu in (int(value) for value in args.per_gpu.split(",")):
        with (
            tempfile.TemporaryDirectory(prefix="taas-share-bench-") as folder,
            deployment(Path(folder) / "home", worker_options(args, per_gpu)) as client,
        ):
            jobs = run_round(client, spec, args.jobs, args.timeout)
        rounds.append(summarize(per_gpu, jobs))
        done = rounds[-1]
        print(
            f"jobs per GPU {per_gpu}: {args.jobs} jobs in {done.wall_seconds:.1f} s, "
            f"{dict(done.statuses)}, at most {done.most_at_once} at once, median job "
            f"{done.median_run_seconds:.1f} s",
            flush=True,
        )
    print(f"\n{args.jobs} x {json.dumps(spec)} on {args.device}")
    print("| jobs per GPU | total wall s | most at once | median job s | vs first |")
    print("|---:|---:|---:|---:|---:|")
    for done in rounds:
        ratio = rounds[0].wall_seconds / done.wall_seconds
        print(
            f"| {done.per_gpu} | {done.wall_seconds:.1f} | {done.most_at_once} "
            f"| {done.median_run_seconds:.1f} | {ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()
