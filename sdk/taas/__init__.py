"""taas: training as a service. ``taas.Client`` talks to a taas service (submit, wait, download);
``taas.load_model`` loads a downloaded model for prediction.

The service itself ships as ``taas.app`` (the API) and ``taas.worker`` (the trainer): one
top-level name, so installing taas never shadows a user's own ``app`` or ``worker`` module.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taas.client import Client
    from taas.errors import (
        ApiError,
        ArtifactIntegrityError,
        AuthenticationError,
        BadRequestError,
        ConflictError,
        InvalidId,
        NotFoundError,
        PayloadTooLargeError,
        PermissionDeniedError,
        RateLimitError,
        ServerError,
        ServiceTimeout,
        ServiceUnreachable,
        TaasError,
        ValidationError,
        WaitTimeout,
    )
    from taas.model import Model, load_model

# Where each public name lives. They are imported on first use: every process of the service
# imports this package first (taas.app and taas.worker are inside it), and most of them need
# neither the HTTP client nor the model loader.
_HOMES = {
    "Client": "taas.client",
    "Model": "taas.model",
    "load_model": "taas.model",
    **dict.fromkeys(
        (
            "ApiError",
            "ArtifactIntegrityError",
            "AuthenticationError",
            "BadRequestError",
            "ConflictError",
            "InvalidId",
            "NotFoundError",
            "PayloadTooLargeError",
            "PermissionDeniedError",
            "RateLimitError",
            "ServerError",
            "ServiceTimeout",
            "ServiceUnreachable",
            "TaasError",
            "ValidationError",
            "WaitTimeout",
        ),
        "taas.errors",
    ),
}

__all__ = [
    "ApiError",
    "ArtifactIntegrityError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "InvalidId",
    "Model",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ServiceTimeout",
    "ServiceUnreachable",
    "TaasError",
    "ValidationError",
    "WaitTimeout",
    "__version__",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("taas")
    if name not in _HOMES:
        raise AttributeError(f"module 'taas' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value  # the next lookup finds it without this function
    return value


def __dir__() -> list[str]:
    """The public names too, though they are imported on first use: tab completion shows them."""
    return sorted({*globals(), *__all__})
