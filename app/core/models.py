"""Every ORM model, imported once so that ``Base.metadata`` knows all tables (Alembic needs it)."""

from taas.app.artifacts.models import Artifact
from taas.app.auth.models import ApiKey, Tenant
from taas.app.core.db import Base
from taas.app.datasets.models import Dataset
from taas.app.jobs.models import Attempt, Event, IdempotencyKey, Job, MetricPoint, MetricStep
from taas.app.scheduling.models import WorkerPresence
from taas.app.stream.models import StreamEvent
from taas.app.sweeps.models import Sweep
from taas.app.webhooks.models import WebhookDelivery, WebhookEndpoint

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
