"""Run one job: claim it, train it through a context object, upload the model, finish it.

The trainer knows nothing of HTTP: ``JobContext`` is its only window, and a heartbeat thread keeps
the lease alive and notices a cancel, which the trainer sees between batches via ``should_stop``.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from taas.app.core.config import Settings, get_settings
from taas.app.core.storage_space import free_bytes, storage_full_reason
from taas.app.jobs.memory import MemoryEstimate, format_bytes
from taas.app.observability.request_context import bind as bind_log_context
from taas.app.observability.request_context import job_context
from taas.app.spec import BUILTIN_DATASETS, JOB_ID_PATTERN, DatasetInfo, JobSpec, dataset_info
from taas.worker.datasets.cache import cached_dataset
from taas.worker.progress import LiveProgress
from taas.worker.reporter import ApiRefused, ApiReporter, Claim, StaleAttempt, StorageFull
from taas.worker.resources.devices import device_label, jobs_per_gpu, pinned_gpu
from taas.worker.resources.gpu_share import GpuShare, GpuTooSmall
from taas.worker.resources.memory import NotEnoughMemory, check_fits
from taas.worker.resources.oom_watch import OomWatch
from taas.worker.trainer.compiled import use_disk_cache
from taas.worker.trainer.data import (
    Dataset,
    DatasetUnavailable,
    dataset_info_of_canonical,
    load_canonical,
    load_dataset,
)
from taas.worker.trainer.export import ExportFailed, artifact_kind, write_model_files
from taas.worker.trainer.loop import TrainingPreempted, TrainResult, train
from taas.worker.trainer.run import MetricPoint
from taas.worker.trainer.series import StepPoint

logger = logging.getLogger(__name__)

# A job still running this long after its time limit is stuck (see Watchdog): exit with this code.
WEDGED_EXIT_AFTER_SECONDS = 300.0
WEDGED_EXIT_CODE = 70  # EX_SOFTWARE
# Progress goes to the API this often (with the heartbeat) while a job trains.
PROGRESS_SECONDS = 1.0

# Set when this worker process is asked to shut down (SIGTERM: a preemption, a deploy): the job
# stops within a batch and goes back to the queue, to resume from its last checkpoint elsewhere.
SHUTTING_DOWN = threading.Event()
# The outcome of a job this worker stopped because it is going away: released, not finished.
PREEMPTED: dict[str, Any] = {"status": "preempted"}


class JobContext:
    """What the trainer may do to the outside world: report, log, and ask whether to stop."""

    def __init__(
        self, reporter: ApiReporter, job_id: str, attempt: int, epochs: int, scratch: Path
    ) -> None:
        self.reporter, self.job_id, self.attempt, self.epochs = reporter, job_id, attempt, epochs
        self.scratch = scratch  # this job's local folder for checkpoint files
        self.stop_requested = threading.Event()
        self.prune_requested = threading.Event()  # the trial's sweep stopped it early
        self.lost = threading.Event()  # the API says this attempt is stale: write nothing more
        self.timed_out = threading.Event()  # the attempt reached its time limit (Watchdog)
        self.progress = LiveProgress(epochs)  # sent with every heartbeat
        self.memory: MemoryEstimate | None = None  # the job's estimated peak, once checked
        self.gpu_share: GpuShare | None = None  # holds a share of a GPU other jobs use too
        self.oom_watch: OomWatch | None = None  # tells the API if the kernel kills this process

    @property
    def epochs_done(self) -> int:
        return self.progress.epochs_done

    def report_metrics(self, point: MetricPoint) -> None:
        if self.progress.has_points():
            self.beat()  # the epoch's step points first: a reader sees them before its end
        self.progress.epoch_completed(point.epoch)
        values = {key: finite_or_none(value) for key, value in point.to_json().items()}
        self.call_api(self.reporter.post_metrics, values)

    def report_progress(self, epoch: int, batches_done: int, batches: int, samples: int) -> None:
        self.progress.batch_done(epoch, batches_done, batches, samples)

    def report_step(self, point: StepPoint) -> None:
        self.progress.add_point(point)

    def log(self, message: str) -> None:
        try:
            self.call_api(self.reporter.post_event, message)
        except StorageFull:  # a message is not worth stopping for; the worker log has it
            logger.warning("job %s: event not recorded (storage full): %s", self.job_id, message)

    def should_stop(self) -> bool:
        return self.stop_requested.is_set() or SHUTTING_DOWN.is_set()

    def should_prune(self) -> bool:
        return self.prune_requested.is_set()

    def checkpoint_on_stop(self) -> bool:
        """A preemption (this worker shuts down) keeps the progress; a cancel or a timeout
        does not need it."""
        return SHUTTING_DOWN.is_set() and not self.stop_requested.is_set()

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write the checkpoint locally, upload it, delete it: the API's copy is what a new
        attempt, on any worker, resumes from, so the worker keeps none between epochs. A full
        disk here or at the API skips this checkpoint (training goes on; a new attempt would
        resume from the one before) instead of failing the job."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = self.scratch / f"checkpoint-epoch{int(state['epoch'])}.pt"
        try:
            _write_checkpoint(state, path)
            # Not waited for when the API is full: the next epoch's checkpoint may fit.
            upload_now = partial(self.reporter.upload_artifact, wait_for_storage=False)
            self.call_api(upload_now, path, "checkpoint")
        except OSError as error:
            if storage_full_reason(error) is None:
                raise
            self._skip_checkpoint(state, f"{storage_full_reason(error)} on the worker")
        except StorageFull as error:
            self._skip_checkpoint(state, f"storage full on the API ({error})")
        finally:
            path.unlink(missing_ok=True)

    def _skip_checkpoint(self, state: dict[str, Any], why: str) -> None:
        message = f"checkpoint of epoch {int(state['epoch'])} not kept: {why}; training goes on"
        logger.warning("job %s: %s", self.job_id, message)
        self.log(message)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The job's latest checkpoint from the API (verified against its sha256), or None."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = self.scratch / "resume.pt"
        try:
            name = self.call_api(self.reporter.download_checkpoint, path)
            if name is None:
                return None
            # weights_only: tensors and plain values, never arbitrary pickled objects.
            state: dict[str, Any] = torch.load(path, weights_only=True)
        except (ValueError, RuntimeError, OSError) as error:
            self.log(f"the last checkpoint is unusable ({error}); starting from scratch")
            return None
        finally:
            path.unlink(missing_ok=True)
        return state

    def beat(self) -> None:
        """Renew the lease, with the progress and step points gathered since the last beat."""
        report = self.progress.report()
        try:
            answer = self.call_api(self.reporter.heartbeat, report)
        except Exception:
            self.progress.put_back(report["points"])
            raise
        if answer is None:  # this attempt is stale: call_api has stopped it
            return
        if answer["cancel"]:
            self.stop_requested.set()
        if answer.get("prune"):
            self.prune_requested.set()

    def call_api(self, call: Any, *args: Any) -> Any:
        if self.lost.is_set():
            return None
        try:
            return call(self.job_id, self.attempt, *args)
        except StaleAttempt:
            self.lost.set()
            self.stop_requested.set()
            return None


def _write_checkpoint(state: dict[str, Any], path: Path) -> None:
    """torch.save through a Python file, so a full disk surfaces as OSError(ENOSPC) (given a
    path, torch reports it as a RuntimeError without the errno); renamed only once complete."""
    unfinished = path.with_suffix(".unfinished")
    try:
        with unfinished.open("wb") as file:
            torch.save(state, file)
        unfinished.replace(path)
    finally:
        unfinished.unlink(missing_ok=True)


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
    scratch = settings.worker_scratch_dir / job_id
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
                _run_claimed(claim, reporter, scratch, settings)
    finally:
        reporter.close()
        # However the job ended (even when its result could not be reported), this worker's
        # copies are of no more use: the API keeps the checkpoints.
        shutil.rmtree(scratch, ignore_errors=True)


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
            outcome = _train_and_upload(
                spec, context, lambda: _load(spec, claim, context, settings)
            )
        finally:
            if context.gpu_share is not None:
                context.gpu_share.release(claim.job_id)
        if context.timed_out.is_set() and outcome["status"] == "cancelled":
            outcome = _failure("timeout", _timeout_message(claim, context))
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


class StoppedWaiting(Exception):
    """The job was cancelled, or the worker is stopping, while the job waited for a GPU share."""


def _timeout_message(claim: Claim, context: JobContext) -> str:
    return (
        f"stopped at its time limit of {claim.time_limit} after epoch {context.epochs_done}; "
        "to finish within it, ask for fewer epochs, or set training.max_seconds below the "
        "limit: the trainer then stops by itself in time and keeps its best model"
    )


def _load(spec: JobSpec, claim: Claim, context: JobContext, settings: Settings) -> Dataset:
    """A built-in from this machine (downloaded only if allowed), or the job's uploaded dataset
    from the worker's cache, fetched from the API on a miss."""
    if claim.dataset is None:
        if spec.dataset in BUILTIN_DATASETS:
            _check_memory(spec, dataset_info(spec), context, settings)
        data_dir = settings.resolved_data_dir
        return load_dataset(spec, data_dir, allow_download=settings.allow_download)

    def download(destination: Path) -> None:
        try:
            context.reporter.download_dataset(context.job_id, context.attempt, destination)
        except StaleAttempt:
            context.lost.set()  # someone else runs the job now: report nothing more
            raise
        except ApiRefused as error:
            raise DatasetUnavailable(f"cannot fetch dataset {spec.dataset}: {error}") from error

    with cached_dataset(
        claim.dataset,
        settings.dataset_cache_dir,
        download,
        context.log,
        max_bytes=settings.dataset_cache_bytes,
    ) as path:
        _check_memory(spec, dataset_info_of_canonical(path, spec.dataset), context, settings)
        return load_canonical(path, spec.dataset)


def _check_memory(
    spec: JobSpec, info: DatasetInfo, context: JobContext, settings: Settings
) -> None:
    """Before loading anything: NotEnoughMemory when the job cannot fit this worker. The
    estimate is kept to quote if the job runs out of memory all the same."""
    context.memory = check_fits(spec, info, settings)
    if context.oom_watch is not None:
        context.oom_watch.note(_out_of_memory_advice(context))
    context.log(f"memory: the job needs {context.memory.describe()}")
    _reserve_gpu_share(context, settings)


def _reserve_gpu_share(context: JobContext, settings: Settings) -> None:
    """On a GPU that several jobs share: wait for this job's share of its memory, and cap the
    process at it. StoppedWaiting when the job is cancelled (or the worker stops) meanwhile."""
    share = gpu_share(settings)
    if share is None or context.memory is None or context.memory.device != "cuda":
        return
    reserved = share.reserve(context.job_id, context.memory.total, context.should_stop, context.log)
    if reserved is None:
        raise StoppedWaiting()
    context.gpu_share = share
    torch.cuda.set_per_process_memory_fraction(reserved / share.total_bytes)
    context.log(
        f"GPU {share.gpu}: this job may use {format_bytes(reserved)} of its "
        f"{format_bytes(share.total_bytes)} ({share.jobs_per_gpu} jobs share it)"
    )


def gpu_share(settings: Settings) -> GpuShare | None:
    """The ledger of this process's GPU when `--jobs-per-gpu` shares it, else None."""
    gpu = pinned_gpu()
    if gpu is None or jobs_per_gpu() == 1 or not torch.cuda.is_available():
        return None
    total = torch.cuda.mem_get_info()[1]
    return GpuShare(settings.home.resolve() / "gpu-shares", gpu, total, jobs_per_gpu())


def _train_and_upload(
    spec: JobSpec, context: JobContext, load: Callable[[], Dataset]
) -> dict[str, Any]:
    """Train and upload the model; the outcome dict is the body of the finish call."""
    try:
        dataset = load()
        result = train(spec, dataset, context)
        if result.stop_reason == "cancelled":
            return {"status": "cancelled", **_result_fields(result)}
        with tempfile.TemporaryDirectory(prefix="taas-model-") as folder:
            for path in write_model_files(result, spec, dataset, Path(folder)):
                context.call_api(context.reporter.upload_artifact, path, artifact_kind(path))
        return {"status": "succeeded", **_result_fields(result)}
    except TrainingPreempted:
        return PREEMPTED  # checkpointed where it stopped: give the job back
    except StoppedWaiting:
        return PREEMPTED if SHUTTING_DOWN.is_set() else {"status": "cancelled"}
    except (DatasetUnavailable, NotEnoughMemory, GpuTooSmall) as error:
        return _failure("user_error", str(error))
    except ExportFailed as error:
        return _failure("internal", str(error))
    except StorageFull as error:
        return _failure("infra", f"storage full on the API: {error}; free space there and retry")
    except ConnectionError:
        # The API stayed unreachable through every retry: leave the attempt to expire, so the
        # job resumes from its checkpoint instead of failing for an outage.
        raise
    except (torch.OutOfMemoryError, MemoryError) as error:
        return _out_of_memory(context, error)
    except RuntimeError as error:
        if CPU_ALLOCATION_FAILED not in str(error):
            return _unexpected(context, error)
        return _out_of_memory(context, error)
    except Exception as error:
        return _unexpected(context, error)


# How PyTorch's CPU allocator says it failed (a RuntimeError, unlike CUDA's OutOfMemoryError).
CPU_ALLOCATION_FAILED = "can't allocate memory"


def _out_of_memory(context: JobContext, error: BaseException) -> dict[str, Any]:
    logger.warning("job %s ran out of memory: %s", context.job_id, error)
    advice = _out_of_memory_advice(context)
    return _failure("user_error", f"ran out of memory ({type(error).__name__}); {advice}")


def _out_of_memory_advice(context: JobContext) -> str:
    estimate = context.memory
    if estimate is None:
        return "lower training.batch_size or use a smaller model"
    # It was admitted, so the estimate fell short here: advise what would halve it.
    halved = estimate.advice(estimate.total // 2)
    return f"it was estimated to need {estimate.describe()}; to need about half, {halved}"


def _unexpected(context: JobContext, error: Exception) -> dict[str, Any]:
    reason = storage_full_reason(error)
    if reason is not None:  # writing the model files on this worker
        return _failure("infra", f"{reason} on the worker")
    if SHUTTING_DOWN.is_set():
        # Raised by the shutdown itself (Celery's cold shutdown interrupts the task), not by
        # the job: give it back rather than fail it.
        logger.warning("job %s interrupted by the worker's shutdown: %r", context.job_id, error)
        return PREEMPTED
    logger.exception("job %s failed", context.job_id)
    return _failure("internal", f"{type(error).__name__}: {error}")


def finite_or_none(value: object) -> object:
    """JSON has no NaN: a diverged loss is reported as null rather than refused by the API."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _result_fields(result: TrainResult) -> dict[str, Any]:
    return {
        "test_accuracy": finite_or_none(result.test_accuracy),
        "test_loss": finite_or_none(result.test_loss),
        "stop_reason": result.stop_reason,
        "device": result.device,
        "acceleration": result.acceleration,
    }


def _failure(error_type: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "error_type": error_type, "error_message": message[:4000]}


def worker_name() -> str:
    return f"{socket.gethostname()}:{threading.get_native_id()}{device_label()}"
