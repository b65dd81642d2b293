"""Every ORM model, imported once so that ``Base.metadata`` knows all tables (Alembic needs it)."""

from app.artifacts.models import Artifact
from app.auth.models import ApiKey, Tenant
from app.datasets.models import Dataset
from app.db import Base
from app.jobs.models import Attempt, Event, IdempotencyKey, Job, MetricPoint, MetricStep
from app.scheduling.models import WorkerPresence
from app.stream.models import StreamEvent
from app.sweeps.models import Sweep
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "Artifact",
    "Attempt",
    "Base",
    "Dataset",
    "Event",
    "IdempotencyKey",
    "Job",
    "MetricPoint",
    "MetricStep",
    "StreamEvent",
    "Sweep",
    "Tenant",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkerPresence",
]
