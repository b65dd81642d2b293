"""The Celery app both sides share: the API only sends job ids, workers consume them.

The broker carries job ids only (never specs or tensors); the database stays the source of truth.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import Any

import redis
from celery import Celery
from kombu import Queue
from kombu.exceptions import ChannelError

from taas.app.core.config import Settings, get_settings

RUN_JOB_TASK = "taas.run_job"
ALL_QUEUES = ("cpu", "gpu")
logger = logging.getLogger(__name__)


def _transport_options(settings: Settings) -> dict[str, Any]:
    url = settings.resolved_broker_url
    if url.startswith("filesystem://"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),  # default is ./control: the cwd
            "store_processed": False,
            # A worker looks for a new message this often (kombu's default is every second):
            # listing a local folder costs little, and a job starts this much sooner.
            "polling_interval": 0.05,
        }
    # Redis re-delivers an unacknowledged message after the visibility timeout; it must be longer
    # than the longest job we allow, or a long job would run twice.
    return {"visibility_timeout": int(settings.max_job_seconds + 3600)}


def make_celery_app(settings: Settings) -> Celery:
    app = Celery("taas", broker=settings.resolved_broker_url, set_as_current=False)
    app.conf.update(
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=settings.default_queue,
        # Acknowledge after the task ran and give the message back if the worker process dies:
        # the claim on the API makes a second delivery harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A training job holds a whole device: never reserve a second one while the first runs.
        worker_prefetch_multiplier=1,
        # A lost broker connection (a Redis restart) must not stop the training that runs: the
        # job's state is in the database, not in the message. (Celery 6 turns this on by default.)
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Each message carries its job's own hard limit (enqueue_job); this default only covers a
        # message sent without one. Celery enforces it in prefork children (--concurrency > 1);
        # the solo pool relies on the worker's own watchdog (worker/runner.py).
        task_time_limit=int(settings.max_job_seconds + 3600),
        # Fail an enqueue fast when the broker is down instead of hanging the HTTP request.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        broker_connection_timeout=3,
        worker_hijack_root_logger=False,
    )
    return app


@lru_cache
def get_celery_app() -> Celery:
    return make_celery_app(get_settings())


def enqueue_job(job_id: str, queue: str, time_limit_seconds: float) -> bool:
    """Send the job id to its queue; False (and a log line) when the broker is unreachable.

    ``time_limit_seconds`` is the attempt's limit (app/jobs/time_limits.py). Celery's hard limit
    comes last, two leases later: after the worker's own stop at the limit and the reconciler's
    timeout a lease after it, so it only ends a prefork child whose training ignored both.
    """
    hard_limit = math.ceil(time_limit_seconds + 2 * get_settings().lease_seconds)
    try:
        get_celery_app().send_task(RUN_JOB_TASK, args=[job_id], queue=queue, time_limit=hard_limit)
    except Exception as error:  # kombu raises many types; the job stays queued in the database
        logger.warning("could not enqueue %s on %s: %r", job_id, queue, error)
        return False
    return True


def queue_depth(queue: str) -> int | None:
    """Messages waiting in ``queue`` (not counting those workers hold), or None when the broker
    does not answer."""
    try:
        with get_celery_app().connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            bound = Queue(queue).bind(connection.default_channel)
            # Typed as the queue's name, but kombu returns the broker's declare-ok reply.
            declared: Any = bound.queue_declare(passive=True)
            return int(declared.message_count)
    except ChannelError:
        return 0  # Redis drops an empty queue's key: the queue is not there, so nothing waits
    except Exception:
        logger.warning("could not ask the broker how many messages wait in %s", queue)
        return None


# A key the reconcilers keep in a Redis broker. Redis without persistence comes back from a
# restart empty: the key is gone, and so is every message that waited.
BROKER_MARK_KEY = "taas:broker-mark"


def broker_came_back_empty() -> bool:
    """True, in exactly one API process, the first time the Redis broker is seen without its
    mark (after a restart that lost its data, or on first use); False for a broker that keeps
    its messages (the filesystem broker) and when Redis does not answer."""
    url = get_settings().resolved_broker_url
    if not url.startswith(("redis://", "rediss://")):
        return False
    try:
        with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
            return bool(client.set(BROKER_MARK_KEY, "set by the taas reconciler", nx=True))
    except redis.RedisError:
        return False


def broker_answers(timeout: int = 2) -> bool:
    try:
        with get_celery_app().connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception:
        return False
    return True
