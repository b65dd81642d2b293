"""What the trainer may do to the outside world during one attempt (``JobContext``): report,
log, keep and fetch checkpoints through the API, and ask whether to stop; and ``SHUTTING_DOWN``,
set when this worker process is going away."""

from __future__ import annotations

import logging
import math
import threading
from functools import partial
from pathlib import Path
from typing import Any

import torch

from taas.app.core.storage_space import storage_full_reason
from taas.app.jobs.memory import MemoryEstimate
from taas.worker.progress import LiveProgress
from taas.worker.reporter import ApiReporter, StaleAttempt, StorageFull
from taas.worker.resources.gpu_share import GpuShare
from taas.worker.resources.oom_watch import OomWatch
from taas.worker.trainer.run import MetricPoint
from taas.worker.trainer.series import StepPoint

# An attempt's log lines all name the runner's logger, whichever module of it writes them.
logger = logging.getLogger("taas.worker.runner")

# Set when this worker process is asked to shut down (SIGTERM: a preemption, a deploy): the job
# stops within a batch and goes back to the queue, to resume from its last checkpoint elsewhere.
SHUTTING_DOWN = threading.Event()


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
        # Beats come from the heartbeat thread and from the training thread (an epoch's end):
        # one at a time, each report taken just before it is sent, so they reach the API in
        # the order they were taken and the progress a stream shows never goes back.
        self.beating = threading.Lock()
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

    def report_start(self, device: str, acceleration: dict[str, object]) -> None:
        self.progress.started(device, acceleration)
        self.beat()  # the job's page shows them now, not at the next heartbeat

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
        with self.beating:
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


def finite_or_none(value: object) -> object:
    """JSON has no NaN: a diverged loss is reported as null rather than refused by the API."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
