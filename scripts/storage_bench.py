"""What object storage costs the taas API: downloads, dataset uploads and checkpoint uploads.

Real processes on this machine: `moto.server` as the S3 endpoint (a fresh one per part, with
one bucket), and `taas api` processes on SQLite (migrated with `taas migrate`), each started
with the environment a deployment would give it. No `taas worker` runs: jobs are submitted
through the API and claimed with the worker token, then files are uploaded with the worker's
own ApiReporter, exactly as a worker would send them.

1. Artifact download, proxied against redirected: a random --size-mib MiB file is uploaded as
   ``model.safetensors`` of a claimed job (ApiReporter: presigned parts straight to the store)
   through one API, which is then stopped; two fresh APIs on the same database and bucket, one
   with TAAS_STORAGE_DOWNLOADS=proxy and one with redirect, serve one download each with
   ``taas.client.Client.download`` (follows the 307, checks the sha256).
2. Dataset upload, presigned against through the API: an uncompressed .npz of about --size-mib
   MiB (uint8 x of shape (N, 28, 28), int64 y over 10 classes), sent once with
   ``Client.upload_dataset(direct=True)`` and once with ``direct=False``, each to a fresh API
   (so that its VmHWM, the lifetime peak RSS, belongs to that one upload) and as its own tenant
   (the same bytes from the same tenant would be answered from the first upload). Both paths
   end on the API host: the file is copied to a local staging file and decoded there. A thread
   polls the API's VmRSS every 20 ms; the peak before the staging copy is whole is the transit
   part, what comes after it is validation (decoding, the canonical file, its upload).
3. Checkpoint uploads, S3 against the filesystem: ApiReporter.upload_artifact(kind=
   "checkpoint") of files of 16, 64 and 256 MiB (--checkpoint-mib), --repeats times each
   (median), alternating between an API on S3 (direct to the store) and one on the filesystem
   (through the API, which hashes, writes and fsyncs).

For every measurement: wall seconds, the CPU seconds of the API process and of moto (utime +
stime from /proc/PID/stat, before and after), and of this process's main thread (the client).
It prints the CPU, the versions, progress lines and a markdown table at the end. From the
repository root:

    .venv/bin/python -m scripts.storage_bench                 # 1024 MiB
    .venv/bin/python -m scripts.storage_bench --size-mib 64

moto is a pure-Python server on the same machine: on a 2-core machine it is often the
bottleneck of every transfer it takes part in, and it competes for the cores with the API and
the client. Its CPU seconds are printed so that a reader can tell.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
import httpx
import numpy as np
from sqlalchemy.orm import Session

import taas
from taas.app.auth.service import create_api_key
from taas.app.core.config import Settings
from taas.app.core.db import make_engine
from taas.client import Client
from taas.worker.reporter import ApiReporter

MIB = 1024 * 1024
GIB = 1024 * MIB
SAMPLE_SECONDS = 0.02
STARTUP_SECONDS = 60.0
CLIENT_TIMEOUT = 1800.0  # the upload through the API answers only after validating the file
BUCKET = "taas-bench"
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench-access-key",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-key",  # a dummy credential for the local moto server
    "AWS_REGION": "us-east-1",
}
JOB_SPEC = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 256, "test_size": 64, "shape": [1, 12, 12]},
    "training": {"epochs": 1},
}
PR_SET_PDEATHSIG = 1
NOTES = """
Notes:
- CPU seconds are utime + stime from /proc/PID/stat (all threads) over the operation; client CPU
  is this process's main thread (time.thread_time), where the SDK or the worker's reporter runs;
  machine CPU is the busy time of /proc/stat (every process): what exceeds API + moto + client
  is this script's sampler thread, the kernel's writeback, or other processes.
- API VmHWM is the process's lifetime peak RSS: each download and dataset upload had a fresh API
  process, so it is that operation's peak. The checkpoint APIs served every upload of their row.
- Dataset uploads: "staging copy whole" is when the API's staging file (TAAS_HOME/datasets/
  .staging) held every byte, sampled every 20 ms. Before it is transit: for direct=True the
  client's PUTs to the store, then the API assembling and verifying the object and copying it
  from the store to local disk, then to the staging file; for direct=False the request body
  spooled to a temporary file, then copied to the staging file. After it is validation: decoding
  the arrays, writing the canonical safetensors file and putting it into the store.
- moto keeps a SHA-256 checksum for multipart uploads but none for an object sent in one PUT (a
  file of 64 MiB or less), so for those the API reads the object back and hashes it, where S3
  would answer with its checksum. moto also serves each ranged GET by reading the whole object.
- moto is pure Python, on the same cores as the API and the client: where its CPU seconds come
  near the wall seconds, moto is the bottleneck, not taas.
"""


# --- the machine and the versions -------------------------------------------------------------


def print_environment() -> None:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "?")
    flags_line = next((line for line in lines if line.startswith("flags")), "")
    flags = sorted({flag for flag in flags_line.split() if flag.startswith(("avx", "sha", "aes"))})
    memory = next(line for line in Path("/proc/meminfo").read_text().splitlines())
    print(f"CPU: {model}, {os.cpu_count()} logical cores; {' '.join(memory.split()[1:])} memory")
    print(f"CPU flags (avx*, sha*, aes*): {' '.join(flags) or 'none'}")
    print(f"Python {platform.python_version()} ({sys.executable})")
    packages = (
        "taas", "fastapi", "starlette", "uvicorn", "httpx", "boto3", "botocore", "s3transfer",
        "moto", "numpy", "safetensors",
    )  # fmt: skip
    print("Versions: " + ", ".join(f"{name} {version(name)}" for name in packages))
    print(f"Code: git HEAD {git('rev-parse', '--short', 'HEAD') or 'unknown'}")
    changed = git("diff", "--name-only", "HEAD", "--", "app", "worker", "sdk").split()
    print(f"  working tree differs from HEAD in: {' '.join(changed) or 'nothing'}")
    stale = installed_differences()
    print(f"  installed taas (what runs) differs from the working tree in: {stale or 'nothing'}")
    print(f"Load average at start: {Path('/proc/loadavg').read_text().strip()}")
    print(flush=True)


def git(*arguments: str) -> str:
    done = subprocess.run(["git", *arguments], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def installed_differences() -> str:
    """The source files whose installed copy (site-packages/taas) is not the working tree's."""
    installed = Path(taas.__file__).parent
    sources = {"app": installed / "app", "worker": installed / "worker", "sdk/taas": installed}
    different = []
    for folder, target in sources.items():
        for source in sorted(Path(folder).rglob("*.py")):
            copy = target / source.relative_to(folder)
            if not copy.is_file() or copy.read_bytes() != source.read_bytes():
                different.append(str(source))
    return " ".join(different)


def machine_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used (all of /proc/stat's busy time)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# --- processes: moto, taas api, and what /proc says about them -------------------------------


def die_with_parent() -> None:
    """A preexec_fn: the child gets SIGTERM when this process ends, however it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mib(pid: int, name: str) -> float:
    """A memory line of /proc/PID/status (VmRSS, VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Server:
    """A child process whose output goes to a log file (printed when it fails)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)  # uvicorn and moto shut down cleanly on it
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=30)


def spawn(name: str, command: list[str], env: dict[str, str], folder: Path, url: str) -> Server:
    log_path = folder / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            command, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )  # fmt: skip
    return Server(name, popen, log_path, url)


def wait_until(server: Server, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():
        if server.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not start:\n{server.log_tail()}")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def moto_server(folder: Path) -> Iterator[Server]:
    """A fresh moto S3 server with the bucket BUCKET (moto keeps every object in memory)."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, **AWS_ENVIRONMENT}
    server = spawn(f"moto-{port}", command, env, folder, f"http://127.0.0.1:{port}")
    try:
        wait_until(server, lambda: answers(f"{server.url}/moto-api/"))
        credentials = {
            "aws_access_key_id": AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
            "region_name": AWS_ENVIRONMENT["AWS_REGION"],
        }
        boto3.client("s3", endpoint_url=server.url, **credentials).create_bucket(Bucket=BUCKET)
        yield server
    finally:
        print(f"  ({server.name}: peak RSS {status_mib(server.pid, 'VmHWM'):.0f} MiB)")
        server.stop()


# --- taas deployments: a home, a migrated database, keys, API processes ----------------------


@dataclass
class Deployment:
    """One taas installation: its home (SQLite database, staging folders) and environment.
    API processes started from it share the database and the store."""

    name: str
    home: Path
    env: dict[str, str]
    worker_token: str
    apis: list[Server] = field(default_factory=list)

    def create_key(self, tenant: str) -> str:
        """An admin key, written to the database as `taas keys create --tenant` would."""
        engine = make_engine(Settings(home=self.home).resolved_database_url)
        try:
            with Session(engine) as session, session.begin():
                return create_api_key(session, tenant)
        finally:
            engine.dispose()

    def start_api(self, name: str, **extra_env: str) -> Server:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**self.env, "TAAS_API_URL": url, **extra_env}
        command = [sys.executable, "-m", "taas.app.cli", "api", "--port", str(port)]
        api = spawn(f"{self.name}-{name}", command, env, self.home.parent, url)
        self.apis.append(api)
        wait_until(api, lambda: answers(f"{url}/readyz"))
        print(f"  {api.name}: pid {api.pid}, RSS at start {status_mib(api.pid, 'VmRSS'):.0f} MiB")
        return api

    def stop(self) -> None:
        for api in self.apis:
            api.stop()


def new_deployment(root: Path, name: str, moto: Server | None, **settings: str) -> Deployment:
    """A migrated home under ``root``; its files in moto's bucket (prefix ``name``) where moto
    is given, else on the filesystem under the home."""
    home = root / name / "home"
    (home / "tmp").mkdir(parents=True)
    worker_token = secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAAS_", "AWS_"))}
    env.update(
        TAAS_HOME=str(home),
        TAAS_WORKER_TOKEN=worker_token,
        TAAS_RATE_LIMIT="1000/second",
        TMPDIR=str(home / "tmp"),  # the multipart form's spooled file lands here
        PYTHONUNBUFFERED="1",
        **settings,
    )
    if moto is not None:
        env.update(AWS_ENVIRONMENT, AWS_ENDPOINT_URL=moto.url)
        env["TAAS_STORAGE_URL"] = f"s3://{BUCKET}/{name}"
    migrate = [sys.executable, "-m", "taas.app.cli", "migrate"]
    done = subprocess.run(migrate, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"taas migrate failed:\n{done.stdout}\n{done.stderr}")
    return Deployment(name, home, env, worker_token)


def claimed_job(api: Server, key: str, worker_token: str) -> str:
    """A tiny job, submitted as the tenant and claimed (attempt 1) with the worker token."""
    with Client(api.url, key) as client:
        job_id = str(client.submit(JOB_SPEC)["id"])
    reporter = ApiReporter(api.url, worker_token)
    try:
        claim = reporter.claim(job_id, "bench")
    finally:
        reporter.close()
    if claim is None or claim.attempt != 1:
        raise RuntimeError(f"could not claim {job_id}: {claim}")
    return job_id


# --- measuring --------------------------------------------------------------------------------


class RssSampler:
    """Polls a process's VmRSS every SAMPLE_SECONDS in a thread: the peak, and the peak before
    ``marker`` first holds (the end of the transit phase), with when it first held."""

    def __init__(self, pid: int, marker: Callable[[], bool] | None) -> None:
        self.pid, self.marker = pid, marker
        self.peak = 0.0
        self.peak_before_marker = 0.0
        self.marker_at: float | None = None
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        rss = status_mib(self.pid, "VmRSS")
        self.peak = max(self.peak, rss)
        if self.marker_at is not None:
            return
        if self.marker is not None and self.marker():
            self.marker_at = time.perf_counter() - self.started
        else:
            self.peak_before_marker = max(self.peak_before_marker, rss)


@dataclass
class Usage:
    """One measured operation."""

    seconds: float = 0.0
    api_cpu: float = 0.0
    moto_cpu: float | None = None
    client_cpu: float = 0.0  # this process's main thread: the SDK or the worker's reporter
    machine_cpu: float = 0.0  # every process on the machine: the rest is interference
    api_start_mib: float = 0.0  # VmRSS before the operation
    api_hwm_mib: float = 0.0  # VmHWM after it: the process's lifetime peak
    sampled_peak_mib: float = 0.0
    transit_peak_mib: float | None = None  # sampled peak before the marker held
    transit_seconds: float | None = None  # from the start until the marker held

    def describe(self) -> str:
        parts = [
            f"{self.seconds:.2f} s",
            f"API CPU {self.api_cpu:.2f} s",
            f"moto CPU {_number(self.moto_cpu)} s",
            f"client CPU {self.client_cpu:.2f} s",
            f"machine CPU {self.machine_cpu:.2f} s",
            f"API RSS {self.api_start_mib:.0f} MiB before, VmHWM {self.api_hwm_mib:.0f} MiB,"
            f" sampled peak {self.sampled_peak_mib:.0f} MiB",
        ]
        if self.transit_seconds is not None:
            parts.append(
                f"staging copy whole at {self.transit_seconds:.2f} s, RSS peak until then "
                f"{_number(self.transit_peak_mib, 0)} MiB"
            )
        return "; ".join(parts)


@contextmanager
def measured(
    api: Server, moto: Server | None, marker: Callable[[], bool] | None = None
) -> Iterator[Usage]:
    """Wall time and CPU seconds of the API, moto and this thread around the block, and the
    API's memory (sampled, and VmHWM afterwards)."""
    usage = Usage(api_start_mib=status_mib(api.pid, "VmRSS"))
    api_before = cpu_seconds(api.pid)
    moto_before = cpu_seconds(moto.pid) if moto else 0.0
    client_before = time.thread_time()
    machine_before = machine_cpu_seconds()
    start = time.perf_counter()
    with RssSampler(api.pid, marker) as sampler:
        yield usage
        usage.seconds = time.perf_counter() - start
        usage.client_cpu = time.thread_time() - client_before
        usage.machine_cpu = machine_cpu_seconds() - machine_before
        usage.api_cpu = cpu_seconds(api.pid) - api_before
        usage.moto_cpu = cpu_seconds(moto.pid) - moto_before if moto else None
    usage.api_hwm_mib = status_mib(api.pid, "VmHWM")
    usage.sampled_peak_mib = sampler.peak
    if marker is not None:
        usage.transit_seconds = sampler.marker_at
        usage.transit_peak_mib = sampler.peak_before_marker


@dataclass
class Row:
    measurement: str
    mib: float
    usage: Usage
    note: str = ""


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[Row]) -> None:
    print("\n### Results (medians where repeated)\n")
    print(
        "| measurement | MiB | wall s | MiB/s | s per MiB | API CPU s | moto CPU s | client CPU s"
        " | machine CPU s | API RSS before MiB | API VmHWM MiB"
        " | API RSS peak before staging copy whole MiB | staging copy whole at s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        u = row.usage
        cells = [
            row.measurement + (f" ({row.note})" if row.note else ""),
            f"{row.mib:.0f}",
            f"{u.seconds:.2f}",
            f"{row.mib / u.seconds:.1f}",
            f"{u.seconds / row.mib:.4f}",
            f"{u.api_cpu:.2f}",
            _number(u.moto_cpu),
            f"{u.client_cpu:.2f}",
            f"{u.machine_cpu:.2f}",
            f"{u.api_start_mib:.0f}",
            f"{u.api_hwm_mib:.0f}",
            _number(u.transit_peak_mib, 0),
            _number(u.transit_seconds),
        ]
        print("| " + " | ".join(cells) + " |")


# --- files ------------------------------------------------------------------------------------


def write_random_file(path: Path, size_mib: int) -> Path:
    with path.open("wb") as file:
        for _ in range(size_mib):
            file.write(os.urandom(MIB))
    return path


def write_npz(path: Path, size_mib: int) -> int:
    """An uncompressed .npz of about ``size_mib`` MiB: uint8 x (N, 28, 28), int64 y over 10
    classes. Returns N."""
    count = size_mib * MIB // (28 * 28)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=count, dtype=np.int64)
    np.savez(path, x=x, y=y)
    return count


def staged_whole(folder: Path, size_bytes: int) -> Callable[[], bool]:
    """Whether a file of ``size_bytes`` lies in ``folder``: the API's staging copy of an
    upload, after which it decodes (both upload paths stage into the same folder)."""

    def check() -> bool:
        try:
            return any(entry.stat().st_size == size_bytes for entry in os.scandir(folder))
        except FileNotFoundError:
            return False

    return check


# --- 1. artifact download: proxied against redirected ------------------------------------------


def bench_downloads(root: Path, size_mib: int) -> list[Row]:
    print(f"## 1. A {size_mib} MiB artifact, downloaded through the API and by redirect")
    rows = []
    with moto_server(root) as moto, ExitStack() as stack:
        deployment = new_deployment(root, "downloads", moto)
        stack.callback(deployment.stop)
        key = deployment.create_key("bench")
        uploader = deployment.start_api("uploader")
        job_id = claimed_job(uploader, key, deployment.worker_token)
        model = write_random_file(root / "model.safetensors", size_mib)
        reporter = ApiReporter(uploader.url, deployment.worker_token)
        with measured(uploader, moto) as upload:
            reporter.upload_artifact(job_id, 1, model, "model")
        reporter.close()
        model.unlink()
        print(f"  worker upload (presigned parts to the store): {upload.describe()}")
        rows.append(Row("artifact upload by the worker, direct to S3", size_mib, upload))
        uploader.stop()
        for mode in ("proxy", "redirect"):
            api = deployment.start_api(mode, TAAS_STORAGE_DOWNLOADS=mode)
            folder = root / f"download-{mode}"
            with Client(api.url, key, timeout=CLIENT_TIMEOUT) as client, measured(api, moto) as u:
                paths = client.download(job_id, folder)
            status = first_status(api, key, f"/v1/jobs/{job_id}/artifacts/model.safetensors")
            print(f"  {mode} (the API answers {status}): {u.describe()}")
            if [path.stat().st_size for path in paths] != [size_mib * MIB]:
                raise RuntimeError(f"{mode}: downloaded {paths}")
            shutil.rmtree(folder)
            rows.append(Row(f"artifact download, {mode}", size_mib, u, note=f"HTTP {status}"))
            api.stop()
    return rows


def first_status(api: Server, key: str, path: str) -> int:
    """The API's own status for a GET, redirects not followed (the body is not read)."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("GET", api.url + path, headers=headers, follow_redirects=False) as answer:
        return answer.status_code


# --- 2. dataset upload: presigned against through the API --------------------------------------


def bench_dataset_uploads(root: Path, size_mib: int) -> list[Row]:
    print(f"\n## 2. A dataset .npz of about {size_mib} MiB, presigned and through the API")
    npz = root / "bench-dataset.npz"
    count = write_npz(npz, size_mib)
    size_bytes = npz.stat().st_size
    print(f"  {npz.name}: {count} samples of 28x28 uint8, {size_bytes / MIB:.1f} MiB")
    limits = {
        "TAAS_MAX_UPLOAD_BYTES": str(2 * GIB),
        "TAAS_MAX_DIRECT_UPLOAD_BYTES": str(2 * GIB),
        "TAAS_MAX_DATASET_SAMPLES": str(max(2_000_000, 2 * count)),
    }
    rows = []
    with moto_server(root) as moto, ExitStack() as stack:
        deployment = new_deployment(root, "datasets", moto, **limits)
        stack.callback(deployment.stop)
        staging = deployment.home / "datasets" / ".staging"
        for direct in (True, False):
            label = "presigned (direct=True)" if direct else "through the API (direct=False)"
            key = deployment.create_key(f"bench-{'direct' if direct else 'api'}")  # no dedup
            api = deployment.start_api("direct" if direct else "through")
            marker = staged_whole(staging, size_bytes)
            client = Client(api.url, key, timeout=CLIENT_TIMEOUT)
            with client, measured(api, moto, marker) as usage:
                dataset = client.upload_dataset(npz, direct=direct)
            print(f"  {label}: {dataset['id']}, {usage.describe()}")
            rows.append(Row(f"dataset upload, {label}", size_bytes / MIB, usage))
            api.stop()
    npz.unlink()
    return rows


# --- 3. checkpoint uploads: S3 against the filesystem -----------------------------------------


def bench_checkpoints(root: Path, sizes_mib: list[int], repeats: int) -> list[Row]:
    print(f"\n## 3. Checkpoint uploads of {sizes_mib} MiB, {repeats} each, S3 and filesystem")
    samples: dict[tuple[str, int], list[Usage]] = {}
    with moto_server(root) as moto, ExitStack() as stack:
        targets = []
        for backend, store in (("S3", moto), ("filesystem", None)):
            deployment = new_deployment(root, f"checkpoints-{backend.lower()}", store)
            stack.callback(deployment.stop)
            api = deployment.start_api("api")
            job_id = claimed_job(api, deployment.create_key("bench"), deployment.worker_token)
            reporter = ApiReporter(api.url, deployment.worker_token)
            stack.callback(reporter.close)
            targets.append((backend, api, job_id, reporter))
        folder = root / "checkpoints"
        folder.mkdir()
        epoch = 0
        for size in sizes_mib:
            source = write_random_file(root / f"random-{size}.bin", size)
            for _ in range(repeats):
                epoch += 1
                path = folder / f"checkpoint-epoch{epoch}.pt"
                os.link(source, path)
                for backend, api, job_id, reporter in targets:
                    with measured(api, moto if backend == "S3" else None) as usage:
                        reporter.upload_artifact(job_id, 1, path, "checkpoint")
                    print(f"  {size} MiB to {backend}: {usage.describe()}")
                    samples.setdefault((backend, size), []).append(usage)
                path.unlink()
            source.unlink()
    return [
        Row(f"checkpoint upload, {backend}", size, median_usage(usages), note=_how(backend))
        for (backend, size), usages in sorted(samples.items(), key=lambda item: item[0][1])
    ]


def _how(backend: str) -> str:
    return "worker direct to the store" if backend == "S3" else "through the API"


def median_usage(usages: list[Usage]) -> Usage:
    """Each field's median over the repeats (memory fields: the last repeat's)."""

    def median(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return statistics.median(present) if present else None

    return Usage(
        seconds=statistics.median(u.seconds for u in usages),
        api_cpu=statistics.median(u.api_cpu for u in usages),
        moto_cpu=median([u.moto_cpu for u in usages]),
        client_cpu=statistics.median(u.client_cpu for u in usages),
        machine_cpu=statistics.median(u.machine_cpu for u in usages),
        api_start_mib=usages[-1].api_start_mib,
        api_hwm_mib=usages[-1].api_hwm_mib,
        sampled_peak_mib=usages[-1].sampled_peak_mib,
    )


# --- main -------------------------------------------------------------------------------------


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="artifact and dataset size")
    parser.add_argument(
        "--checkpoint-mib", default="16,64,256", help="checkpoint sizes, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3, help="uploads per checkpoint size")
    return parser.parse_args()


def exit_on_sigterm(signum: int, frame: FrameType | None) -> Any:
    sys.exit(128 + signum)  # so that the finally blocks stop the servers and remove the files


def print_logs(root: Path) -> None:
    """The end of every server's log, for a run that failed (the folder is removed after)."""
    for log in sorted(root.rglob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)


def main() -> None:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    print_environment()
    root = Path(tempfile.mkdtemp(prefix="taas-storage-bench-"))
    print(f"Work folder: {root} (removed at the end)\n", flush=True)
    rows: list[Row] = []
    try:
        rows += bench_downloads(root, arguments.size_mib)
        rows += bench_dataset_uploads(root, arguments.size_mib)
        sizes = [int(size) for size in arguments.checkpoint_mib.split(",")]
        rows += bench_checkpoints(root, sizes, arguments.repeats)
    except BaseException:
        print_logs(root)
        raise
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows)
    print(NOTES)
    print(f"Load average at the end: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
