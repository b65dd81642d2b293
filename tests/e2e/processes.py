"""Real processes for end-to-end tests: `taas serve`, or `taas api` + `taas worker` separately."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.private_servers import die_with_this_thread, free_port

__all__ = ["Process", "base_env", "free_port", "taas_command", "wait_until_healthy"]

STARTUP_SECONDS = 60.0


def taas_command(*args: str) -> list[str]:
    """The installed `taas` entry point, run with this interpreter (works from any directory)."""
    return [sys.executable, "-m", "taas.app.cli", *args]


def child_pids(pid: int) -> list[int]:
    """Direct children of a process, read from /proc (Linux)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        children += [int(item) for item in text.split()]
    return children


def children_running(pid: int, word: str) -> list[int]:
    """Direct children of a process whose command line contains ``word`` (Linux). The kernel's
    list of children is reliable only while they are stopped: poll it, or learn a pid otherwise."""
    found = []
    for child in child_pids(pid):
        try:
            arguments = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue  # it just exited
        if is_alive(child) and any(word.encode() in argument for argument in arguments):
            found.append(child)
    return found


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@dataclass
class Process:
    """A child process whose output goes to a log file that tests print on failure."""

    name: str
    command: Sequence[str]
    env: dict[str, str]
    cwd: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.cwd / f"{self.name}.log"

    def start(self) -> Process:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                list(self.command),
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # An interrupted test session leaves no server or worker behind.
                preexec_fn=die_with_this_thread(signal.SIGTERM),
            )
        return self

    def run(self, timeout: float = 120.0) -> str:
        result = subprocess.run(
            list(self.command),
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"{self.name} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as the out-of-memory killer or a lost machine would: no cleanup at all."""
        assert self.popen is not None, f"{self.name} was never started"
        self.popen.kill()
        self.popen.wait(timeout=10)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return None


def wait_until_healthy(api_url: str, processes: Sequence[Process]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        for process in processes:
            if process.popen is not None and process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited early:\n{process.log()}")
        try:
            if httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    logs = "\n".join(f"--- {process.name}\n{process.log()}" for process in processes)
    raise RuntimeError(f"API at {api_url} not ready after {STARTUP_SECONDS}s\n{logs}")


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TAAS_")}
    # The tests poll far faster than a person or a script would: rate limits stay on (their
    # headers are on every answer) but high. tests/app/core/test_rate_limits.py checks the limits.
    limits = {"TAAS_RATE_LIMIT": "500/second"}
    env.update({"TAAS_HOME": str(home), "PYTHONUNBUFFERED": "1", **limits, **extra})
    return env
