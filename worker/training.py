"""One claimed job's work: load its data (once its estimated memory fits this worker and its
share of a shared GPU is reserved), train, upload the model files; and the outcome the API is
told, whatever happened on the way."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from taas.app.core.config import Settings
from taas.app.core.storage_space import storage_full_reason
from taas.app.jobs.memory import format_bytes
from taas.app.spec import BUILTIN_DATASETS, DatasetInfo, JobSpec, dataset_info
from taas.worker.context import SHUTTING_DOWN, JobContext, finite_or_none
from taas.worker.datasets.cache import cached_dataset
from taas.worker.reporter import ApiRefused, Claim, StaleAttempt, StorageFull
from taas.worker.resources.devices import jobs_per_gpu, pinned_gpu
from taas.worker.resources.gpu_share import GpuShare, GpuTooSmall
from taas.worker.resources.memory import NotEnoughMemory, check_fits
from taas.worker.trainer.data import (
    Dataset,
    DatasetUnavailable,
    dataset_info_of_canonical,
    load_canonical,
    load_dataset,
)
from taas.worker.trainer.export import ExportFailed, artifact_kind, write_model_files
from taas.worker.trainer.loop import TrainingPreempted, TrainResult, train

# An attempt's log lines all name the runner's logger, whichever module of it writes them.
logger = logging.getLogger("taas.worker.runner")

# The outcome of a job this worker stopped because it is going away: released, not finished.
PREEMPTED: dict[str, Any] = {"status": "preempted"}


class StoppedWaiting(Exception):
    """The job was cancelled, or the worker is stopping, while the job waited for a GPU share."""


def load_data(spec: JobSpec, claim: Claim, context: JobContext, settings: Settings) -> Dataset:
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
        # Named as its owner named it (model.json, repr(model)); the spec keeps its id.
        return load_canonical(path, claim.dataset.name or spec.dataset)


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


def train_and_upload(
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
        return failure("user_error", str(error))
    except ExportFailed as error:
        return failure("internal", str(error))
    except StorageFull as error:
        return failure("infra", f"storage full on the API: {error}; free space there and retry")
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
    return failure("user_error", f"ran out of memory ({type(error).__name__}); {advice}")


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
        return failure("infra", f"{reason} on the worker")
    if SHUTTING_DOWN.is_set():
        # Raised by the shutdown itself (Celery's cold shutdown interrupts the task), not by
        # the job: give it back rather than fail it.
        logger.warning("job %s interrupted by the worker's shutdown: %r", context.job_id, error)
        return PREEMPTED
    logger.exception("job %s failed", context.job_id)
    return failure("internal", f"{type(error).__name__}: {error}")


def _result_fields(result: TrainResult) -> dict[str, Any]:
    return {
        "test_accuracy": finite_or_none(result.test_accuracy),
        "test_loss": finite_or_none(result.test_loss),
        "stop_reason": result.stop_reason,
        "device": result.device,
        "acceleration": result.acceleration,
    }


def failure(error_type: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "error_type": error_type, "error_message": message[:4000]}
