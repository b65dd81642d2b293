"""The worker's Celery app: the shared configuration from app.broker plus this package's tasks."""

from __future__ import annotations

from celery.signals import worker_shutting_down

from app.broker import make_celery_app
from app.config import get_settings
from worker.runner import SHUTTING_DOWN

celery_app = make_celery_app(get_settings())
celery_app.conf.include = ["worker.tasks"]


@worker_shutting_down.connect
def _stop_the_running_job(**_: object) -> None:
    # SIGTERM (warm shutdown): the running job stops within a batch and is given back.
    SHUTTING_DOWN.set()
