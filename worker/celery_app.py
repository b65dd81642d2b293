"""The worker's Celery app: the shared configuration from app.broker plus this package's tasks."""

from __future__ import annotations

from billiard.process import current_process
from celery.signals import worker_process_init, worker_shutting_down

from app.broker import make_celery_app
from app.config import get_settings
from worker.devices import pin_gpu
from worker.runner import SHUTTING_DOWN

celery_app = make_celery_app(get_settings())
celery_app.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _pin_this_process_to_its_gpu(**_: object) -> None:
    # Before any CUDA call: the index-th GPU of `taas worker --gpus` is this process's own (the
    # solo pool's one process has no index: it is the first).
    pin_gpu(getattr(current_process(), "index", 0))


@worker_shutting_down.connect
def _stop_the_running_job(**_: object) -> None:
    # SIGTERM (warm shutdown): the running job stops within a batch and is given back.
    SHUTTING_DOWN.set()
