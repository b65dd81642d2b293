"""Celery tasks, kept thin: a task takes a job id and hands it to the runner."""

from __future__ import annotations

from celery.exceptions import Reject

from taas.app.scheduling.broker import RUN_JOB_TASK
from taas.worker.celery_app import celery_app
from taas.worker.context import SHUTTING_DOWN
from taas.worker.runner import run_job_by_id


@celery_app.task(name=RUN_JOB_TASK)
def run_job(job_id: str) -> None:
    if SHUTTING_DOWN.is_set():
        # A message taken while this worker stops (a job it just gave back, say): back to the
        # broker for another worker, before any claim.
        raise Reject("this worker is shutting down", requeue=True)
    run_job_by_id(job_id)
