"""Celery tasks, kept thin: a task takes a job id and hands it to the runner."""

from __future__ import annotations

from app.broker import RUN_JOB_TASK
from worker.celery_app import celery_app
from worker.runner import run_job_by_id


@celery_app.task(name=RUN_JOB_TASK)
def run_job(job_id: str) -> None:
    run_job_by_id(job_id)
