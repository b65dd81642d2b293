"""Tells the API when the kernel's OOM killer ended a job's worker process.

A process killed with SIGKILL can report nothing itself, and without this its job would look like
a lost worker: retried, killed again, and failed as ``infra`` at the last attempt. So while a job
trains, a small watcher process (``python -m taas.worker.resources.oom_watch``, no PyTorch)
holds a pipe from the worker. The worker writes notes (the job's memory estimate) and, when the
job ends however it ends, ``done``. An end of the pipe without ``done`` means the worker process
is gone: if an OOM-kill counter of the kernel (core.kernel_memory.oom_kill_counts) moved
meanwhile, the watcher fails the attempt as ``user_error`` naming memory, while its lease still
holds. Any other death (kill -9 by hand, a crash) is left to the reconciler, which runs the job
again.

When the kernel kills a whole cgroup at once (memory.oom.group, as Kubernetes does), the watcher
dies too, and the job is handled as a lost worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from types import TracebackType

DONE = "done"
NOTE = "note "
# The first counter reading, before the job trains, travels as the watcher's argument.
OOM_MESSAGE = (
    "ran out of memory: the kernel killed the worker process that trained it (out-of-memory "
    "killer); {note}"
)
DEFAULT_NOTE = "lower training.batch_size or use a smaller model"


class OomWatch:
    """Runs the watcher for one attempt; ``note`` tells it the estimate to quote."""

    def __init__(self, job_id: str, attempt: int, api_url: str, worker_token: str) -> None:
        from taas.app.core.kernel_memory import oom_kill_counts

        command = [
            sys.executable,
            "-m",
            "taas.worker.resources.oom_watch",
            job_id,
            str(attempt),
            json.dumps(oom_kill_counts()),
        ]
        env = {**os.environ, "TAAS_API_URL": api_url, "TAAS_WORKER_TOKEN": worker_token}
        # A session of its own: a Ctrl-C or SIGTERM sent to the worker's process group must not
        # end the watcher, which has to outlive the worker to see how it ended.
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, env=env, text=True, start_new_session=True
        )

    def note(self, text: str) -> None:
        self._send(NOTE + text.replace("\n", " "))

    def __enter__(self) -> OomWatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._send(DONE)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):  # the watcher is gone: the job goes on
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _send(self, line: str) -> None:
        if self.process.stdin is None:
            return
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the watcher is gone: nothing to tell, and the job goes on


def watch(job_id: str, attempt: int, counts_before: dict[str, int]) -> bool:
    """Read the worker's pipe to its end; True when it failed the attempt for memory."""
    from taas.app.core.kernel_memory import oom_kill_counts

    note, done = DEFAULT_NOTE, False
    for line in sys.stdin:
        text = line.rstrip("\n")
        done = text == DONE
        if text.startswith(NOTE):
            note = text.removeprefix(NOTE)
    after = oom_kill_counts()
    killed = any(after.get(source, 0) > count for source, count in counts_before.items())
    if done or not killed:
        return False
    _fail_for_memory(job_id, attempt, OOM_MESSAGE.format(note=note))
    return True


def _fail_for_memory(job_id: str, attempt: int, message: str) -> None:
    # Imported here: the watcher of every job starts with the standard library alone.
    from taas.app.core.config import get_settings
    from taas.worker.reporter import ApiRefused, ApiReporter

    settings = get_settings()
    reporter = ApiReporter(settings.api_url, settings.worker_token or "")
    outcome = {"status": "failed", "error_type": "user_error", "error_message": message[:4000]}
    try:
        reporter.finish(job_id, attempt, outcome)
    except (ApiRefused, ConnectionError) as error:
        # Stale (the job ended otherwise) or the API is away: the reconciler has the job.
        print(f"taas: could not fail {job_id} for memory: {error}", file=sys.stderr)
    finally:
        reporter.close()


if __name__ == "__main__":
    watch(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]))
