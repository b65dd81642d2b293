"""taas: training as a service. ``taas.Client`` talks to a taas service (submit, wait, download);
``taas.load_model`` loads a downloaded model for prediction.

The service itself ships as ``taas.app`` (the API) and ``taas.worker`` (the trainer): one
top-level name, so installing taas never shadows a user's own ``app`` or ``worker`` module.
"""

from __future__ import annotations

from taas.client import Client
from taas.errors import (
    ApiError,
    ArtifactIntegrityError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaasError,
    ValidationError,
    WaitTimeout,
)
from taas.model import Model, load_model

__all__ = [
    "ApiError",
    "ArtifactIntegrityError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "Model",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TaasError",
    "ValidationError",
    "WaitTimeout",
    "load_model",
]
