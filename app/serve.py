"""`taas serve`: the embedded default. Migrations, the API and a local Celery worker, one command.

Same code path as production: the worker is a separate process running the same task code, and
only the URLs differ (SQLite and a filesystem broker under TAAS_HOME).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from app import migrate
from app.auth.service import create_api_key
from app.config import get_settings
from app.db import reset_engine_cache, session_scope

WORKER_STOP_SECONDS = 20.0
EMBEDDED_LEASE_SECONDS = 15.0


def write_secret(path: Path, value: str) -> None:
    """Write a file only its owner can read (created 0600, never briefly world-readable)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    os.chmod(path, 0o600)


def ensure_worker_token(home: Path) -> str:
    path = home / "worker_token"
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def ensure_api_key(home: Path) -> None:
    """On first start, create a key for the `default` tenant, print it and save it for the CLI."""
    path = home / "api_key"
    if path.exists():
        print(f"API key: in {path}")
        return
    with session_scope() as session:
        key = create_api_key(session, "default")
    write_secret(path, key)
    print(f"Created API key (saved to {path}, shown once):\n  {key}")


def _die_with_parent() -> None:
    # Linux only: the worker gets SIGTERM if `taas serve` itself is killed, so it never lingers.
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_worker() -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "app.cli", "worker", "--queues", "cpu,gpu"]
    # Its own session: Ctrl-C in the terminal reaches only `taas serve`, which stops the worker.
    return subprocess.Popen(
        command,
        env=os.environ.copy(),
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """Warm shutdown first; a training job that does not stop in time is killed (it stays
    `running` until its lease expires and it is re-queued)."""
    if worker.poll() is not None:
        return
    # SIGTERM: the job stops within a batch, checkpoints there and is given back, which may
    # take a checkpoint upload; the harder signals get less time.
    for sig, wait in (
        (signal.SIGTERM, WORKER_STOP_SECONDS),
        (signal.SIGQUIT, WORKER_STOP_SECONDS / 4),
        (signal.SIGKILL, WORKER_STOP_SECONDS / 4),
    ):
        try:
            os.killpg(worker.pid, sig)
        except ProcessLookupError:
            return
        try:
            worker.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class WorkerSupervisor:
    """Keeps the local worker alive: when it exits for any reason (a crash, kill -9, out of
    memory) it is started again, and its interrupted job resumes from its last checkpoint once
    the reconciler sees the lease expire. A worker that dies right after starting is restarted
    after a growing pause, so a broken setup does not spin."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.worker = start_worker()
        self.restarts = 0
        self.thread = threading.Thread(target=self._watch, name="taas-supervisor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=WORKER_STOP_SECONDS)
        stop_worker(self.worker)

    def _watch(self) -> None:
        pause, started = 1.0, time.monotonic()
        while not self.stopping.wait(0.5):
            code = self.worker.poll()
            if code is None:
                continue
            # A worker that ran for a while earns a quick restart; one that keeps dying waits.
            pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 30.0)
            print(f"taas: the worker exited ({code}); restarting it in {pause:.0f} s", flush=True)
            if self.stopping.wait(pause):
                return
            self.worker, started = start_worker(), time.monotonic()
            self.restarts += 1


class _WorkerFirstServer(uvicorn.Server):
    """On Ctrl-C or SIGTERM, stop the worker while the API still answers: the worker gives its
    running job back to the queue over HTTP, so the job resumes on the next start instead of
    waiting for its lease to expire. A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, supervisor: WorkerSupervisor) -> None:
        super().__init__(config)
        self.supervisor = supervisor
        self.exiting = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.exiting:
            super().handle_exit(sig, frame)
            return
        self.exiting = True
        # Not in the signal handler itself: the event loop must keep serving the worker's calls.
        threading.Thread(target=self._stop_worker_then_exit, args=(sig, frame)).start()

    def _stop_worker_then_exit(self, sig: int, frame: Any) -> None:
        self.supervisor.stop()
        super().handle_exit(sig, frame)


def connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


def serve(host: str, port: int) -> None:
    home = get_settings().home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    # Everything below (this process and the worker it starts) reads these through Settings.
    os.environ["TAAS_HOME"] = str(home)
    os.environ.setdefault("TAAS_WORKER_TOKEN", ensure_worker_token(home))
    os.environ.setdefault("TAAS_API_URL", f"http://{connect_host(host)}:{port}")
    # One machine, one worker: a lost worker is noticed sooner than a cluster's default allows.
    os.environ.setdefault("TAAS_LEASE_SECONDS", str(EMBEDDED_LEASE_SECONDS))
    get_settings.cache_clear()
    reset_engine_cache()
    migrate.upgrade()
    ensure_api_key(home)
    print(f"taas: API on http://{host}:{port}, data in {home}", flush=True)
    supervisor = WorkerSupervisor()
    supervisor.start()
    try:
        from app.main import create_app

        config = uvicorn.Config(create_app(), host=host, port=port, log_level="info")
        # uvicorn re-raises the Ctrl-C it handled once it has shut down; uvicorn.run() swallows
        # it, and so does this.
        with contextlib.suppress(KeyboardInterrupt):
            _WorkerFirstServer(config, supervisor).run()
    finally:
        supervisor.stop()
