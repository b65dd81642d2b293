"""What the API counts for Prometheus: requests, job outcomes, the reconciler, workers' speed.

Every metric here is a counter or a histogram: those add up across the processes of
`taas api --workers N` (prometheus-client's multiprocess mode, see metrics_scrape.py), where a
gauge set in one process would say nothing about the others. How many jobs are in each state
is a gauge read from the database at scrape time instead (JobsCollector), which is exact
whichever process answers.

Job metrics are recorded once the transaction that made the change commits (``after_commit``):
a compare-and-set that lost, or a request that rolled back, counts nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from taas.app.jobs.models import Job
    from taas.app.scheduling.reconciler import Reconciled

# Seconds, from a cached GET (milliseconds) to an upload or a stream (minutes).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# Seconds, from a job taken at once by an idle worker to one that waited or trained for a day.
JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600)
EPOCH_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SAMPLES_PER_SECOND_BUCKETS = (100, 300, 1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7)

HTTP_REQUESTS = Counter(
    "taas_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "taas_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response (a stream's whole life).",
    ["method", "route", "status"],
    buckets=REQUEST_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "taas_job_queue_wait_seconds",
    "Time from a job's submission to the start of its first attempt.",
    ["queue"],
    buckets=JOB_BUCKETS,
)
RUN_TIME = Histogram(
    "taas_job_run_seconds",
    "Time from the start of a job's last attempt to its end, by how it ended.",
    ["queue", "status"],
    buckets=JOB_BUCKETS,
)
ATTEMPTS_RETRIED = Counter(
    "taas_attempts_retried_total",
    "Attempts that ended with their job queued again (lease expired, or the worker gave it back).",
    ["queue"],
)
LEASES_EXPIRED = Counter(
    "taas_leases_expired_total",
    "Attempts whose worker stopped heartbeating, found by the reconciler.",
    ["queue"],
)
JOBS_FAILED = Counter(
    "taas_jobs_failed_total",
    "Jobs that ended failed, by error type (user_error, infra, timeout, internal).",
    ["queue", "error_type"],
)
RECONCILER_PASSES = Counter(
    "taas_reconciler_passes_total",
    "Reconciler passes, by outcome (ok, or failed: the database or the disk was away).",
    ["outcome"],
)
RECONCILER_ACTIONS = Counter(
    "taas_reconciler_actions_total",
    "What reconciler passes did, one per job (or stored file, for expired), by action.",
    ["action"],
)
WORKER_SAMPLES_PER_SECOND = Histogram(
    "taas_worker_samples_per_second",
    "Training throughput of each epoch, as reported by the workers.",
    ["queue"],
    buckets=SAMPLES_PER_SECOND_BUCKETS,
)
WORKER_EPOCH_SECONDS = Histogram(
    "taas_worker_epoch_seconds",
    "Length of each training epoch, as reported by the workers.",
    ["queue"],
    buckets=EPOCH_BUCKETS,
)

_PENDING = "taas_metrics_pending"  # key in Session.info: records waiting for the commit


def after_commit(session: Session, record: Callable[[], None]) -> None:
    """Run ``record`` once the session's transaction commits; never if it rolls back."""
    session.info.setdefault(_PENDING, []).append(record)


@event.listens_for(Session, "after_commit")
def _record_committed(session: Session) -> None:
    for record in session.info.pop(_PENDING, []):
        record()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def job_transitioned(session: Session, job: Job, previous: str, status: str) -> None:
    """A compare-and-set moved ``job`` from ``previous`` to ``status`` (app/jobs/service.py)."""
    queue = job.queue
    if status == "running" and job.attempt == 1:
        waited = _seconds(job.created_at, job.started_at)
        after_commit(session, lambda: QUEUE_WAIT.labels(queue).observe(waited))
    if status == "queued" and previous in ("running", "cancelling"):
        after_commit(session, ATTEMPTS_RETRIED.labels(queue).inc)
    if status in ("succeeded", "failed", "cancelled") and job.started_at is not None:
        ran = _seconds(job.started_at, job.finished_at)
        after_commit(session, lambda: RUN_TIME.labels(queue, status).observe(ran))
    if status == "failed":
        after_commit(session, JOBS_FAILED.labels(queue, job.error_type or "internal").inc)


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return max((end - start).total_seconds(), 0.0)


def lease_expired(session: Session, queue: str) -> None:
    after_commit(session, LEASES_EXPIRED.labels(queue).inc)


def epoch_reported(
    session: Session, queue: str, samples_per_second: float | None, epoch_seconds: float | None
) -> None:
    """A worker's epoch metrics (either may be unmeasured: None)."""
    if samples_per_second is not None:
        throughput = samples_per_second
        after_commit(session, lambda: WORKER_SAMPLES_PER_SECOND.labels(queue).observe(throughput))
    if epoch_seconds is not None:
        length = epoch_seconds
        after_commit(session, lambda: WORKER_EPOCH_SECONDS.labels(queue).observe(length))


def reconcile_pass(done: Reconciled | None) -> None:
    """One reconciler pass: what it did, or None when it failed."""
    RECONCILER_PASSES.labels("ok" if done is not None else "failed").inc()
    if done is None:
        return
    for item in fields(done):
        # Zero too: every action's series exists from the first pass, so rate() sees its start.
        RECONCILER_ACTIONS.labels(item.name).inc(len(getattr(done, item.name)))


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route, str(status)).observe(seconds)
