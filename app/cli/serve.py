"""`taas serve`: the embedded default. Migrations, the API and a local Celery worker, one command.

Same code path as production: the worker is a separate process running the same task code, and
only the URLs differ (SQLite and a filesystem broker under TAAS_HOME).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import uvicorn

from taas.app.auth.service import create_api_key
from taas.app.core import migrate
from taas.app.core.config import get_settings
from taas.app.core.db import reset_engine_cache, session_scope
from taas.app.observability.logs import RedactSecrets, formatter

WORKER_STOP_SECONDS = 20.0
EMBEDDED_LEASE_SECONDS = 15.0
WORKER_LOG = "logs/worker.log"  # under TAAS_HOME
SERVE_LOCK = "serve.lock"  # under TAAS_HOME: held while a `taas serve` runs there
API_LOG = "logs/api.log"
# kombu says this at every start and stop of the embedded broker: nothing to act on.
HARMLESS = ("No hostname was supplied",)


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


def ensure_api_key(home: Path) -> str | None:
    """On first start, create a key for the `default` tenant and save it for the CLI; returns
    the new key (to show once), or None when the file was there already."""
    path = home / "api_key"
    if path.exists():
        return None
    with session_scope() as session:
        # Admin: the one person using this service may also make and revoke keys.
        key = create_api_key(session, "default", name="taas serve", scope="admin")
    write_secret(path, key)
    return key


def banner(host: str, port: int, home: Path, new_key: str | None) -> str:
    url = f"http://{connect_host(host)}:{port}"
    key = f"{home / 'api_key'}" + (f" (new, shown once: {new_key})" if new_key else "")
    return "\n".join(
        [
            f"taas is running on {url}",
            f"  dashboard   {url}/",
            f"  API docs    {url}/docs",
            f"  API key     {key}",
            f"  data        {home}",
            f"  logs        {home / WORKER_LOG} (worker), {home / API_LOG} (API)",
            "Stop with Ctrl-C (a running job goes back to the queue and resumes at the next start)",
        ]
    )


def log_api_to_file(home: Path) -> None:
    """The API's log (requests included) goes to a file, as JSON lines with
    TAAS_LOG_FORMAT=json; the console shows warnings and errors, as text for the person there."""
    settings = get_settings()
    path = home / API_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(formatter(settings, "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_console = logging.StreamHandler()
    to_console.setLevel(logging.WARNING)
    to_console.addFilter(lambda record: not record.getMessage().startswith(HARMLESS))
    to_console.setFormatter(logging.Formatter("taas: %(levelname)s %(message)s"))
    for handler in (to_file, to_console):
        handler.addFilter(RedactSecrets(settings))
    logging.basicConfig(level=logging.INFO, handlers=[to_file, to_console], force=True)


class WorkerLogEcho:
    """Shows on the console the worker log's lines that matter: warnings and errors, with the
    traceback that follows one, and a traceback printed before Celery's logging started.
    Everything else (Celery's banner, each task) stays in the file."""

    RECORD = re.compile(r"^\[[^\]]*: (?P<level>[A-Z]+)/[^\]]*\] (?P<message>.*)$")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.in_traceback = False

    def echo_new_lines(self, out: IO[str] = sys.stdout) -> None:
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                chunk = file.read()
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            shown = self.shown(line)
            if shown is not None:
                print(shown, file=out, flush=True)

    def shown(self, line: str) -> str | None:
        if line.startswith("{"):
            return self.shown_json(line)
        record = self.RECORD.match(line)
        if record is not None:
            self.in_traceback = False
            level, message = record["level"], record["message"]
            if level in ("WARNING", "ERROR", "CRITICAL") and not message.startswith(HARMLESS):
                return f"worker: {level} {message}"
            return None
        if line.startswith("Traceback"):
            self.in_traceback = True
        elif self.in_traceback and line and not line[0].isspace():
            self.in_traceback = False  # the exception's own line ends the traceback
            return f"worker: {line}"
        return f"worker: {line}" if self.in_traceback else None

    @staticmethod
    def shown_json(line: str) -> str | None:
        """A JSON log line (TAAS_LOG_FORMAT=json): its traceback is one of its fields."""
        try:
            record = json.loads(line)
            level, message = record["level"], record["message"]
        except (ValueError, KeyError, TypeError):
            return f"worker: {line}"
        if level not in ("WARNING", "ERROR", "CRITICAL") or message.startswith(HARMLESS):
            return None
        shown = f"worker: {level} {message}"
        return f"{shown}\n{record['exception']}" if record.get("exception") else shown


def _die_with_parent() -> None:
    # Linux only: the worker gets SIGTERM if `taas serve` itself is killed, so it never lingers.
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_worker(log_path: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "taas.app.cli", "worker", "--queues", "cpu,gpu"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Its own session: Ctrl-C in the terminal reaches only `taas serve`, which stops the worker.
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command,
            env=os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
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

    def __init__(self, log_path: Path) -> None:
        self.stopping = threading.Event()
        self.log_path = log_path
        self.log_echo = WorkerLogEcho(log_path)
        self.worker = start_worker(log_path)
        self.restarts = 0
        self.thread = threading.Thread(target=self._watch, name="taas-supervisor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=WORKER_STOP_SECONDS)
        stop_worker(self.worker)
        self.log_echo.echo_new_lines()

    def _watch(self) -> None:
        pause, started = 1.0, time.monotonic()
        while not self.stopping.wait(0.5):
            self.log_echo.echo_new_lines()
            code = self.worker.poll()
            if code is None:
                continue
            # A worker that ran for a while earns a quick restart; one that keeps dying waits.
            pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 30.0)
            print(f"taas: the worker exited ({code}); restarting it in {pause:.0f} s", flush=True)
            if self.stopping.wait(pause):
                return
            self.worker, started = start_worker(self.log_path), time.monotonic()
            self.restarts += 1


class _WorkerFirstServer(uvicorn.Server):
    """On Ctrl-C or SIGTERM, stop the worker while the API still answers: the worker gives its
    running job back to the queue over HTTP, so the job resumes on the next start instead of
    waiting for its lease to expire. A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, supervisor: WorkerSupervisor, banner: str) -> None:
        super().__init__(config)
        self.supervisor = supervisor
        self.banner = banner
        self.exiting = False

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:  # listening: say where (a port in use is logged as an error instead)
            print(self.banner, flush=True)

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
    with _only_serve_of(home):
        _serve(home, host, port)


@contextlib.contextmanager
def _only_serve_of(home: Path) -> Iterator[None]:
    """One `taas serve` per TAAS_HOME: a second would start a second worker on the same
    database, broker folder and log files. The lock goes with the process, however it ends."""
    with (home / SERVE_LOCK).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            print(
                f"taas: another `taas serve` ({holder}) is running on {home}: stop it first, "
                "or give this one its own TAAS_HOME",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        yield


def _serve(home: Path, host: str, port: int) -> None:
    # Everything below (this process and the worker it starts) reads these through Settings.
    os.environ["TAAS_HOME"] = str(home)
    os.environ.setdefault("TAAS_WORKER_TOKEN", ensure_worker_token(home))
    os.environ.setdefault("TAAS_API_URL", f"http://{connect_host(host)}:{port}")
    # One machine, one worker: a lost worker is noticed sooner than a cluster's default allows.
    os.environ.setdefault("TAAS_LEASE_SECONDS", str(EMBEDDED_LEASE_SECONDS))
    # A developer's webhook receivers are on localhost; production refuses private addresses.
    os.environ.setdefault("TAAS_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()
    reset_engine_cache()
    log_api_to_file(home)
    migrate.upgrade()
    new_key = ensure_api_key(home)
    supervisor = WorkerSupervisor(home / WORKER_LOG)
    supervisor.start()
    try:
        from taas.app.main import create_app

        # log_config=None: uvicorn's loggers go through the handlers above, not its own.
        config = uvicorn.Config(
            create_app(),
            host=host,
            port=port,
            log_level="info",
            log_config=None,
            timeout_graceful_shutdown=get_settings().shutdown_grace_seconds,
        )
        # uvicorn re-raises the Ctrl-C it handled once it has shut down; uvicorn.run() swallows
        # it, and so does this.
        with contextlib.suppress(KeyboardInterrupt):
            _WorkerFirstServer(config, supervisor, banner(host, port, home, new_key)).run()
    finally:
        supervisor.stop()
