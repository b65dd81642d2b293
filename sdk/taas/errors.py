"""The errors the client raises: one class per kind of refusal, each keeping the HTTP status, the
server's ``detail`` (a message, or for a 422 the list of what was wrong) and the request id to
quote when asking the service's operators."""

from __future__ import annotations

from typing import Any

import httpx


class TaasError(Exception):
    """Anything the client raises on purpose."""


class ApiError(TaasError):
    """The service answered with an error status."""

    def __init__(self, status_code: int, detail: Any, request_id: str | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {readable(detail)}")
        self.status_code = status_code
        self.detail = detail
        self.request_id = request_id

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled with its arguments, not its message: process pools and joblib send it back.
        return type(self), (self.status_code, self.detail, self.request_id)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """The error class for the response's status, with its detail."""
        try:
            body = response.json()
            detail = body.get("detail") if isinstance(body, dict) else body
        except ValueError:
            detail = response.text[:500]
        error_class = _BY_STATUS.get(response.status_code)
        if error_class is None:
            error_class = ServerError if response.status_code >= 500 else ApiError
        return error_class(response.status_code, detail, response.headers.get("X-Request-ID"))


def readable(detail: Any) -> str:
    """A 422's list of problems as a person reads it: ``training.lr: Input should be ...``,
    one after the other; any other detail as it is."""
    if not isinstance(detail, list) or not all(isinstance(item, dict) for item in detail):
        return str(detail)
    lines = []
    for item in detail:
        where = ".".join(str(part) for part in item.get("loc", []) if part != "body")
        message = str(item.get("msg", ""))
        named = not where or names_its_field(message, where)
        lines.append(message if named else f"{where}: {message}")
    return "; ".join(lines)


def names_its_field(message: str, where: str) -> bool:
    """Whether the server's message already starts with the field it is about
    (``training.epochs=500: at most 200``, ``parameter 'training.lr': ...``)."""
    parameter = where.removeprefix("parameters.")
    return message.startswith((where, f"parameter {parameter!r}"))


class ServiceUnreachable(TaasError, httpx.ConnectError):
    """The service did not answer at all: it is not running there, or the address is wrong."""


class ServiceTimeout(TaasError, httpx.TimeoutException):
    """The service took longer than the client's timeout to answer."""


class BadRequestError(ApiError):
    """400: the request is malformed (e.g. a body that is not JSON)."""


class AuthenticationError(ApiError):
    """401: no key, or a key that is unknown, revoked or expired."""


class PermissionDeniedError(ApiError):
    """403: the key's scope does not allow this (the detail names the scope needed)."""


class NotFoundError(ApiError):
    """404: no such job, dataset, sweep, key or webhook, or it belongs to another tenant."""


class ConflictError(ApiError):
    """409: not now (e.g. deleting a job that still runs, or no model yet)."""


class PayloadTooLargeError(ApiError):
    """413: an upload or a body over the service's limits."""


class ValidationError(ApiError):
    """422: the spec or a parameter is refused; ``detail`` says which field and why."""


class RateLimitError(ApiError):
    """429: over the key's rate limit, after the client waited and retried."""


class ServerError(ApiError):
    """5xx: the service could not do it now (e.g. its database or storage is away)."""


class InvalidId(TaasError, ValueError):
    """An id that cannot name anything (empty, or not a string): refused before any request."""


class ArtifactIntegrityError(TaasError, ValueError):
    """A downloaded file does not match the sha256 the service listed for it."""


class WaitTimeout(TaasError, TimeoutError):
    """``wait`` gave up before the job or sweep ended; it goes on running."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
}
