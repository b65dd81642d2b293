"""Deliveries of events: added to the session of the change they tell of, so that they are
committed with it or rolled back with it, never one without the other. Flushes, never commits.

A commit that wrote deliveries wakes this process's sender (app/webhooks/sender.py) at once.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from taas.app.core.db import utcnow
from taas.app.jobs.models import Job
from taas.app.sweeps.models import Sweep
from taas.app.webhooks.models import WebhookDelivery, WebhookEndpoint

JOB_EVENTS = {
    "running": "job.running",
    "succeeded": "job.succeeded",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
}
EVENT_TYPES = (*JOB_EVENTS.values(), "sweep.completed")
# Set by a commit that wrote deliveries; the sender waits on it between its polls.
DELIVERIES_WRITTEN = threading.Event()
_WROTE = "taas.webhooks.wrote"


def new_delivery_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def job_status_changed(session: Session, job: Job, status: str) -> None:
    """The job entered ``status``: a delivery for each of its tenant's endpoints that asked."""
    event_type = JOB_EVENTS.get(status)
    if event_type is not None:
        _add_deliveries(session, job.tenant_id, event_type, _job_data(job, status))


def sweep_completed(session: Session, sweep: Sweep) -> None:
    """The sweep ended (succeeded, failed or cancelled)."""
    data = {
        "sweep_id": sweep.id,
        "name": sweep.name,
        "status": sweep.status,
        "reason": sweep.reason,
        "trials_started": sweep.trials_started,
        "finished_at": _iso(sweep.finished_at),
    }
    _add_deliveries(session, sweep.tenant_id, "sweep.completed", data)


def _job_data(job: Job, status: str) -> dict[str, Any]:
    error = {"type": job.error_type, "message": job.error_message} if job.error_type else None
    return {
        "job_id": job.id,
        "name": job.name,
        "status": status,
        "attempt": job.attempt,
        "sweep_id": job.sweep_id,
        "test_accuracy": job.test_accuracy,
        "test_loss": job.test_loss,
        "error": error,
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _add_deliveries(
    session: Session, tenant_id: int, event_type: str, data: dict[str, Any]
) -> None:
    endpoints = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.disabled_at.is_(None)
        )
    )
    now = utcnow()
    body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data})
    for endpoint in endpoints:
        if event_type not in endpoint.events:
            continue
        session.add(
            WebhookDelivery(
                id=new_delivery_id(),
                endpoint_id=endpoint.id,
                event_type=event_type,
                body=body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
def _wake_sender(session: Session) -> None:
    if session.info.pop(_WROTE, False):
        DELIVERIES_WRITTEN.set()


@event.listens_for(Session, "after_rollback")
def _forget_written(session: Session) -> None:
    session.info.pop(_WROTE, None)
