"""GET /metrics: every metric in the Prometheus text format, for one process or for all.

Under `taas api --workers N` each process writes its counters and histograms to files in
``PROMETHEUS_MULTIPROC_DIR`` (set up by the CLI before uvicorn starts them), and whichever
process answers a scrape adds them all up (prometheus-client's MultiProcessCollector). In a
single process the default registry answers, with the process and Python metrics too.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from taas.app.auth.dependencies import SettingsDep
from taas.app.core.db import DATABASE_UNAVAILABLE, describe_database_error, session_scope
from taas.app.jobs.models import JOB_STATUSES, Job
from taas.app.observability.metrics_dir import MULTIPROCESS_ENV
from taas.app.scheduling.broker import ALL_QUEUES

logger = logging.getLogger(__name__)

metrics_scheme = HTTPBearer(auto_error=False, scheme_name="MetricsToken")
MetricsCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(metrics_scheme)]


class JobsCollector(Collector):
    """How many jobs are in each status on each queue, counted in the database at scrape time:
    exact whichever API process answers, where a gauge kept in each process would not be."""

    def collect(self) -> Iterator[Metric]:
        counts = _job_counts()
        up = GaugeMetricFamily(
            "taas_database_up", "1 when this scrape could read the database, else 0."
        )
        up.add_metric([], 0 if counts is None else 1)
        yield up
        if counts is None:
            return
        jobs = GaugeMetricFamily(
            "taas_jobs",
            "Jobs by status and queue, read from the database.",
            labels=["status", "queue"],
        )
        for (job_status, queue), count in sorted(counts.items()):
            jobs.add_metric([job_status, queue], count)
        yield jobs


def _job_counts() -> dict[tuple[str, str], int] | None:
    """Counts for every known status and queue (zeros included, so that series do not vanish),
    or None when the database does not answer."""
    counts = {(job_status, queue): 0 for job_status in JOB_STATUSES for queue in ALL_QUEUES}
    try:
        with session_scope() as session:
            rows = session.execute(
                select(Job.status, Job.queue, func.count()).group_by(Job.status, Job.queue)
            ).all()
    except DATABASE_UNAVAILABLE as error:
        logger.warning("metrics: could not count jobs: %s", describe_database_error(error))
        return None
    for job_status, queue, count in rows:
        counts[(job_status, queue)] = int(count)
    return counts


class _Everything(Collector):
    """This process's metrics from the default registry (single-process mode)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def scrape_registry() -> CollectorRegistry:
    """A registry for one scrape: all processes' metrics (or this one's), and the job counts."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Everything())
    registry.register(JobsCollector())
    return registry


def require_metrics_token(settings: SettingsDep, credentials: MetricsCredentials) -> None:
    """With TAAS_METRICS_TOKEN set, a scrape must present it (compared in constant time)."""
    expected = settings.metrics_token
    if not expected:
        return
    presented = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid metrics token: send 'Authorization: Bearer "
            "<TAAS_METRICS_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


# Not in the public schema: it is for the operator's Prometheus, not for API clients. Not rate
# limited: limits count API keys, and a scrape uses none.
router = APIRouter(include_in_schema=False, dependencies=[Depends(require_metrics_token)])


@router.get("/metrics")
def prometheus_metrics() -> Response:
    return Response(generate_latest(scrape_registry()), media_type=CONTENT_TYPE_LATEST)
