"""The worker's Celery app: the shared configuration from app.broker plus this package's tasks."""

from __future__ import annotations

from app.broker import make_celery_app
from app.config import get_settings

celery_app = make_celery_app(get_settings())
celery_app.conf.include = ["worker.tasks"]
