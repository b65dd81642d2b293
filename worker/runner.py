"""Run one job: claim it, train it through a context object, upload the model, finish it.

The trainer knows nothing of HTTP: ``JobContext`` is its only window, and a heartbeat thread keeps
the lease alive and notices a cancel, which the trainer sees between batches via ``should_stop``.

Here: the attempt from claim to finish, with its heartbeat and time limit. The context is in
context.py; loading the data, training, uploading the model and the outcome in training.py.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from taas.app.core.config import Settings, get_settings
from taas.app.core.storage_space import free_bytes
from taas.app.observability.request_context import bind as bind_log_context
from taas.app.observability.request_context import job_context
from taas.app.spec import JOB_ID_PATTERN, JobSpec
from taas.worker.context import SHUTTING_DOWN, JobContext
from taas.worker.reporter import ApiReporter, Claim, StorageFull
from taas.worker.resources.devices import device_label
from taas.worker.resources.oom_watch import OomWatch
from taas.worker.trainer.compiled import use_disk_cache
from taas.worker.training import failure, load_data, train_and_upload

logger = logging.getLogger(__name__)

# A job still running this long after its time limit is stuck (see Watchdog): exit with this code.
WEDGED_EXIT_AFTER_SECONDS = 300.0
WEDGED_EXIT_CODE = 70  # EX_SOFTWARE
# Progress goes to the API this often (with the heartbeat) while a job trains.
PROGRESS_SECONDS = 1.0


class Heartbeat:
    """Background thread: renew the lease, and report progress, every period until stopped
    (at least every PROGRESS_SECONDS, so that a person watching sees training move)."""

    def __init__(self, context: JobContext, period: float) -> None:
        self.context, self.period = context, min(period, PROGRESS_SECONDS)
        self.done = threading.Event()
        # Run in a copy of this context: its log lines name the job and attempt too.
        self.thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name="taas-heartbeat",
            daemon=True,
        )

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=self.period + 30)
        if self.context.progress.has_points():  # the final evaluation's, among others
            try:
                self.context.beat()
            except Exception as error:  # the curve misses its last points; the job goes on
                logger.warning("job %s: last step points not sent: %s", self.context.job_id, error)

    def _run(self) -> None:
        while not self.done.wait(self.period):
            try:
                self.context.beat()
            except Exception:  # a missed beat is logged; the next one may get through
                logger.exception("heartbeat failed")


class Watchdog:
    """The attempt's time limit, enforced in this process whatever the Celery pool.

    At the limit, training is asked to stop (within a batch) and the job fails as ``timeout``.
    A job still running ``exit_after`` seconds later is stuck where it never asks (a hung
    device call): the process exits, so that its supervisor (``taas serve``, the container's
    restart policy, Celery's prefork parent) starts a fresh one instead of a worker that holds
    its device forever. The reconciler fails the job as ``timeout`` either way.
    """

    def __init__(
        self,
        context: JobContext,
        limit_seconds: float | None,
        *,
        exit_after: float = WEDGED_EXIT_AFTER_SECONDS,
        exit_process: Callable[[int], object] = os._exit,
    ) -> None:
        self.context, self.exit_process = context, exit_process
        self.timers = (
            []
            if limit_seconds is None
            else [
                threading.Timer(limit_seconds, self._time_up),
                threading.Timer(limit_seconds + exit_after, self._wedged),
            ]
        )
        for timer in self.timers:
            timer.daemon = True

    def __enter__(self) -> Watchdog:
        for timer in self.timers:
            timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for timer in self.timers:
            timer.cancel()

    def _time_up(self) -> None:
        self.context.timed_out.set()
        self.context.stop_requested.set()
        logger.warning("job %s reached its time limit; stopping it", self.context.job_id)

    def _wedged(self) -> None:
        logger.critical(
            "job %s is still running past its time limit and does not stop; exiting this worker "
            "process so that a fresh one replaces it",
            self.context.job_id,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()  # os._exit skips the usual flush at exit
        self.exit_process(WEDGED_EXIT_CODE)


def run_job_by_id(job_id: str, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    if not settings.worker_token:
        raise RuntimeError("TAAS_WORKER_TOKEN is not set; the worker cannot talk to the API")
    if not JOB_ID_PATTERN.match(job_id):
        # The id becomes part of a URL and a checkpoint file name: take nothing else from a
        # broker message.
        logger.error("ignoring a message with a malformed job id %r", job_id[:100])
        return
    # Compiled kernels outlive the job: the next one of this architecture loads them.
    use_disk_cache(settings.home)
    reporter = ApiReporter(
        settings.api_url,
        settings.worker_token,
        give_up=SHUTTING_DOWN,
        storage_wait_seconds=settings.storage_wait_seconds,
    )
    try:
        with job_context(job_id):  # every log line until the job is done names it
            if _scratch_is_low(settings, job_id):
                return
            claim = _claim(reporter, job_id)
            if claim is not None:
                bind_log_context(attempt=claim.attempt)
                _run_in_scratch(claim, reporter, settings)
    finally:
        reporter.close()


def _run_in_scratch(claim: Claim, reporter: ApiReporter, settings: Settings) -> None:
    """Run the claimed attempt in a folder of its own. Only the attempt's holder touches it:
    workers on one host share the scratch root, and a duplicate message for the same job (after
    a broker restart, say) reaches another worker here while this one writes a checkpoint."""
    job_scratch = settings.worker_scratch_dir / claim.job_id
    scratch = job_scratch / f"attempt-{claim.attempt}"
    try:
        _run_claimed(claim, reporter, scratch, settings)
    finally:
        # However the attempt ended (even when its result could not be reported), its copies
        # are of no more use: the API keeps the checkpoints. Earlier attempts' folders on this
        # host are left over from killed workers: the API no longer accepts their writes.
        for folder in _attempt_folders(job_scratch, up_to=claim.attempt):
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # a later attempt may already be here
            job_scratch.rmdir()


def _attempt_folders(job_scratch: Path, up_to: int) -> list[Path]:
    try:
        entries = list(job_scratch.iterdir())
    except FileNotFoundError:  # removed by another attempt's end on this host
        return []
    folders = []
    for folder in entries:
        number = folder.name.removeprefix("attempt-")
        if number.isdigit() and int(number) <= up_to:
            folders.append(folder)
    return folders


def _scratch_is_low(settings: Settings, job_id: str) -> bool:
    """A worker whose own disk is nearly full takes no new job: it stays queued for another
    worker, or for later (the reconciler sends it again)."""
    free = free_bytes(settings.worker_scratch_dir)
    if free >= settings.min_free_bytes:
        return False
    logger.warning(
        "not taking job %s: this worker's scratch folder %s has %d bytes free, below "
        "TAAS_MIN_FREE_BYTES=%d; the job stays queued",
        job_id,
        settings.worker_scratch_dir,
        free,
        settings.min_free_bytes,
    )
    return True


def _claim(reporter: ApiReporter, job_id: str) -> Claim | None:
    try:
        claim = reporter.claim(job_id, worker_name())
    except StorageFull as error:
        logger.warning("not taking job %s: %s; it stays queued", job_id, error)
        return None
    if claim is None:
        logger.info("job %s is not queued any more; nothing to do", job_id)
    return claim


def _run_claimed(claim: Claim, reporter: ApiReporter, scratch: Path, settings: Settings) -> None:
    spec = JobSpec.model_validate(claim.spec)
    context = JobContext(reporter, claim.job_id, claim.attempt, spec.training.epochs, scratch)
    logger.info("job %s: attempt %d started", claim.job_id, claim.attempt)
    with (
        Heartbeat(context, claim.heartbeat_seconds),
        Watchdog(context, claim.time_limit_seconds),
        OomWatch(claim.job_id, claim.attempt, reporter.api_url, reporter.worker_token) as watch,
    ):
        context.oom_watch = watch
        try:
            outcome = train_and_upload(
                spec, context, lambda: load_data(spec, claim, context, settings)
            )
        finally:
            if context.gpu_share is not None:
                context.gpu_share.release(claim.job_id)
        if context.timed_out.is_set() and outcome["status"] == "cancelled":
            outcome = failure("timeout", _timeout_message(claim, context))
    if context.lost.is_set():
        return  # another attempt owns the job now: report nothing
    if outcome["status"] == "preempted":
        context.call_api(reporter.release, "the worker is shutting down")
        return
    # A full disk at the API is waited out (TAAS_STORAGE_WAIT_SECONDS); should it last longer,
    # StorageFull propagates and the attempt's lease expires: the reconciler then re-queues or
    # fails the job as soon as the database takes writes again.
    context.call_api(reporter.finish, outcome)
    logger.info("job %s: attempt %d ended %s", claim.job_id, claim.attempt, outcome["status"])


def _timeout_message(claim: Claim, context: JobContext) -> str:
    return (
        f"stopped at its time limit of {claim.time_limit} after epoch {context.epochs_done}; "
        "to finish within it, ask for fewer epochs, or set training.max_seconds below the "
        "limit: the trainer then stops by itself in time and keeps its best model"
    )


def worker_name() -> str:
    return f"{socket.gethostname()}:{threading.get_native_id()}{device_label()}"
