"""Domain errors raised by services; app.main maps each to its HTTP status in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def detail(self) -> Any:
        return self.message


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class InvalidInput(DomainError):
    """Input that parsed but makes no sense; reported in FastAPI's validation-error shape."""

    status_code = 422

    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = loc

    @property
    def detail(self) -> Any:
        return [{"loc": self.loc, "msg": self.message, "type": "value_error"}]


class InvalidInputs(DomainError):
    """Several problems at once, each an item of FastAPI's validation-error shape."""

    status_code = 422

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(item["msg"]) for item in items))
        self.items = items

    @property
    def detail(self) -> Any:
        return self.items


class MalformedHeader(DomainError):
    """A request header that does not parse (400, with the header named in the message)."""

    status_code = 400


class PayloadTooLarge(DomainError):
    status_code = 413


class TooManyRequests(DomainError):
    """A tenant's quota is used up for now; the message says which and how to free it."""

    status_code = 429


class UnsupportedMediaType(DomainError):
    status_code = 415


class IntegrityFailure(DomainError):
    """An upload whose bytes do not match the digest the sender declared."""

    status_code = 422


class InsufficientStorage(DomainError):
    """507: not enough free disk space to keep what the request would write."""

    status_code = 507
