"""The worker's Celery app: the configuration it shares with the API (app/scheduling/broker.py)
and its tasks."""

from __future__ import annotations

import logging
import sys
import warnings
from functools import partial
from typing import Any

import celery.apps.worker
from billiard.process import current_process
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_process_init,
    worker_ready,
    worker_shutting_down,
)

from taas.app.core.config import get_settings
from taas.app.observability.logs import JsonFormatter, RedactSecrets
from taas.app.scheduling.broker import make_celery_app
from taas.worker.context import SHUTTING_DOWN
from taas.worker.datasets import files as dataset_files
from taas.worker.presence import Presence
from taas.worker.resources.devices import pin_gpu

celery_app = make_celery_app(get_settings())
celery_app.conf.include = ["taas.worker.tasks"]


class BrokerLossInOneLine(logging.Filter):
    """kombu logs an acknowledgement that failed because the broker went away (a Redis restart)
    as CRITICAL with a traceback; the job is safe (its state is in the database and the
    reconciler sends it again if the message is lost), so one warning line says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("Couldn't ack"):
            error = record.exc_info[1]
            record.msg = f"could not acknowledge a message, the broker is gone: {error!r}"
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


@worker_ready.connect
def _quiet_the_connection_loss_reminder(**_: object) -> None:
    # Celery says this on every lost broker connection while
    # worker_cancel_long_running_tasks_on_connection_loss keeps its 5.x value, which is the one we
    # want (app/scheduling/broker.py sets it explicitly). Added here: Celery's logging setup, which
    # runs first, turns every such warning on again.
    warnings.filterwarnings(
        "ignore",
        message=r"\s*In Celery 5.1 we introduced an optional breaking change",
        category=CPendingDeprecationWarning,
    )


@after_setup_logger.connect
@after_setup_task_logger.connect
def _shape_worker_logs(logger: logging.Logger, **_: object) -> None:
    """Celery's handlers (the root logger's, and its task logger's): no secrets, one line for
    a lost broker, and JSON lines with TAAS_LOG_FORMAT=json."""
    settings = get_settings()
    for handler in logger.handlers:
        handler.addFilter(BrokerLossInOneLine())
        handler.addFilter(RedactSecrets(settings))
        if settings.log_format == "json":
            handler.setFormatter(JsonFormatter())
    if settings.log_format == "json":
        celery.apps.worker.safe_say = _say_as_json  # type: ignore[attr-defined]


def _say_as_json(message: str, file: Any = sys.__stderr__) -> None:
    """Celery prints a few notices (a warm shutdown) from signal handlers, bypassing logging;
    in JSON mode they become JSON lines too, written at once like Celery's own."""
    record = logging.LogRecord("celery.worker", logging.WARNING, __file__, 0, message, (), None)
    try:
        file.write(JsonFormatter().format(record) + "\n")
        file.flush()
    except (OSError, ValueError):  # the stream is closed: nothing to say it on
        pass


@worker_process_init.connect
def _pin_this_process_to_its_gpu(**_: object) -> None:
    # Before any CUDA call: the index-th GPU of `taas worker --gpus` is this process's own (the
    # solo pool's one process has no index: it is the first).
    pin_gpu(getattr(current_process(), "index", 0))


@worker_shutting_down.connect
def _stop_the_running_job(**_: object) -> None:
    # SIGTERM (warm shutdown): the running job stops within a batch and is given back, and the
    # API sends no more work to this worker's slots.
    SHUTTING_DOWN.set()
    if _presence is not None:
        _presence.stop()


_presence: Presence | None = None


@worker_ready.connect
def _say_alive(sender: Any, **_: object) -> None:
    """From now on the API dispatches jobs to this worker's slots (app/scheduling)."""
    global _presence
    settings = get_settings()
    if not settings.worker_token:
        return  # the first job says what is missing (worker/runner.py)
    queues = [queue.name for queue in sender.task_consumer.queues]
    datasets = partial(dataset_files.report, settings.resolved_data_dir, settings.allow_download)
    _presence = Presence(
        settings.api_url, settings.worker_token, queues, sender.pool.limit, datasets
    )
    _presence.start()
