"""The worker's side of memory: a job that cannot fit is refused before its data is loaded, and
a training process the kernel kills for memory fails its attempt as the user's error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from taas.app.core.config import Settings
from taas.app.core.kernel_memory import cgroup_folder
from taas.worker.context import JobContext
from taas.worker.reporter import ApiReporter, Claim
from taas.worker.training import load_data, train_and_upload
from tests.e2e.processes import is_alive
from tests.worker.trainer.fakes import tiny_spec

JOB_ID = "job_" + "b" * 24
TOKEN = "t" * 30


def test_a_job_that_cannot_fit_the_worker_fails_as_user_error_before_loading(
    tmp_path: Path,
) -> None:
    spec = tiny_spec()
    claim = Claim(JOB_ID, 1, spec.model_dump(mode="json"), 2.0, None)
    settings = Settings(home=tmp_path, worker_memory_bytes=100 * 1024**2, worker_token=TOKEN)
    # The reporter points nowhere: the refusal makes no call before the finish.
    reporter = ApiReporter("http://127.0.0.1:9", TOKEN, attempts=1)
    context = JobContext(reporter, JOB_ID, 1, spec.training.epochs, tmp_path)

    outcome = train_and_upload(spec, context, lambda: load_data(spec, claim, context, settings))

    assert outcome["status"] == "failed"
    assert outcome["error_type"] == "user_error"
    message = outcome["error_message"]
    assert "does not fit in this worker's memory" in message
    assert "of cpu memory at its peak" in message
    assert "its budget (TAAS_WORKER_MEMORY_BYTES) is 100 MiB" in message


class _FakeApi(BaseHTTPRequestHandler):
    finishes: list[tuple[str, dict[str, Any]]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeApi.finishes.append((self.path, body))
        _FakeApi.arrived.set()
        answer = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[str]:
    _FakeApi.finishes.clear()
    _FakeApi.arrived.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def trainer_script(api_url: str, cgroup: Path | None, job_id: str = JOB_ID) -> str:
    """A stand-in for a worker process: inside the memory-limited cgroup (if given), as a worker
    runs inside its container's, it starts the watcher as the runner does, then allocates until
    the kernel kills it, or waits to be killed."""
    join = f"Path({str(cgroup / 'cgroup.procs')!r}).write_text(str(os.getpid()))" if cgroup else ""
    return textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from taas.worker.resources.oom_watch import OomWatch
        {join}
        watch = OomWatch({job_id!r}, 1, {api_url!r}, {TOKEN!r})
        watch.note("it was estimated to need about 64 MiB")
        print("training", watch.process.pid, flush=True)
        hoard = []
        while {cgroup is not None}:
            hoard.append(bytearray(32 * 1024 * 1024))
        time.sleep(60)
        """
    )


@pytest.fixture
def small_cgroup() -> Iterator[Path]:
    """A child of this process's memory cgroup (v1) limited to 256 MiB."""
    parent = cgroup_folder("memory", "memory")
    if parent is None or not (parent / "memory.limit_in_bytes").is_file():
        pytest.skip("no cgroup v1 memory controller to make a limited child in")
    folder = parent / f"taas-oom-test-{os.getpid()}"
    try:
        folder.mkdir()
        (folder / "memory.limit_in_bytes").write_text(str(256 * 1024**2))
    except OSError as error:
        pytest.skip(f"cannot create a memory-limited cgroup here: {error}")
    yield folder
    # The watcher that reported the kill runs in it too: the folder goes once it has exited.
    deadline = time.monotonic() + 30
    while (folder / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    folder.rmdir()


def run_trainer(script: str) -> subprocess.Popen[str]:
    process, _watcher = run_trainer_and_watcher(script)
    return process


def run_trainer_and_watcher(script: str) -> tuple[subprocess.Popen[str], int]:
    """The trainer, once it trains, and its watcher's pid (as the trainer says it: the kernel's
    list of a process's children is not a reliable interface)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    said, watcher = process.stdout.readline().split()
    assert said == "training"
    return process, int(watcher)


def ended(process: subprocess.Popen[str], timeout: float) -> int:
    code = process.wait(timeout=timeout)
    assert process.stdout is not None
    process.stdout.close()
    return code


def test_a_trainer_the_kernel_kills_for_memory_fails_once_as_user_error(
    fake_api: str, small_cgroup: Path
) -> None:
    process = run_trainer(trainer_script(fake_api, small_cgroup))

    assert ended(process, timeout=60) == -signal.SIGKILL  # the kernel's OOM killer
    assert _FakeApi.arrived.wait(30)
    [(path, outcome)] = _FakeApi.finishes
    assert path == f"/internal/v1/jobs/{JOB_ID}/attempts/1/finish"
    assert outcome["status"] == "failed"
    assert outcome["error_type"] == "user_error"
    assert outcome["error_message"].startswith("ran out of memory: the kernel killed the worker")
    assert "it was estimated to need about 64 MiB" in outcome["error_message"]


def test_a_trainer_killed_for_another_reason_is_left_to_the_reconciler(fake_api: str) -> None:
    process = run_trainer(trainer_script(fake_api, None))

    process.send_signal(signal.SIGKILL)  # kill -9 by hand: no OOM counter moves
    assert ended(process, timeout=30) == -signal.SIGKILL

    assert not _FakeApi.arrived.wait(3)
    assert _FakeApi.finishes == []


def test_a_trainer_killed_by_hand_while_another_is_killed_for_memory_is_not_blamed_on_memory(
    fake_api: str, small_cgroup: Path
) -> None:
    # The machine's count of OOM kills moves for any process on it; the watcher reads the count
    # of the worker's own cgroup, which moves only for the worker's own.
    bystander, bystanders_watcher = run_trainer_and_watcher(
        trainer_script(fake_api, None, job_id="job_" + "c" * 24)
    )
    assert is_alive(bystanders_watcher)
    victim = run_trainer(trainer_script(fake_api, small_cgroup))
    assert ended(victim, timeout=60) == -signal.SIGKILL  # the kernel's OOM killer
    assert _FakeApi.arrived.wait(30)

    bystander.send_signal(signal.SIGKILL)  # kill -9 by hand, after the other's OOM kill
    assert ended(bystander, timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while is_alive(bystanders_watcher):  # it has decided once it has exited
        assert time.monotonic() < deadline, "the watcher did not exit"
        time.sleep(0.05)

    assert [path for path, _ in _FakeApi.finishes] == [
        f"/internal/v1/jobs/{JOB_ID}/attempts/1/finish"
    ]


def test_a_watcher_that_died_does_not_break_the_job_that_ends(fake_api: str) -> None:
    from taas.worker.resources.oom_watch import OomWatch

    with OomWatch(JOB_ID, 1, fake_api, TOKEN) as watch:
        watch.note("x" * 100_000)  # more than the pipe holds once nobody reads it
        watch.process.kill()
        watch.process.wait()
        watch.note("the estimate")
    # Leaving the block (the job's outcome is reported next) raised nothing.
    assert watch.process.returncode == -signal.SIGKILL


def test_a_signal_to_the_workers_process_group_leaves_the_watcher_running(fake_api: str) -> None:
    from taas.worker.resources.oom_watch import OomWatch

    with OomWatch(JOB_ID, 1, fake_api, TOKEN) as watch:
        assert os.getpgid(watch.process.pid) != os.getpgid(0)  # Ctrl-C reaches the worker only
        assert watch.process.poll() is None
