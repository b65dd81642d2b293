"""Who and what a log line is about: request id, tenant, job and attempt.

Plain Python (no web framework): the worker sets it too, for the job it runs.

One mutable ``LogContext`` per request (or per job a worker runs) lives in a context variable.
It is set once at the start, and later steps fill it in place: FastAPI runs sync dependencies
in a thread pool with a *copy* of the context, so a value set there with ``ContextVar.set``
would never reach the access log, but a field set on the shared object does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass
class LogContext:
    request_id: str | None = None
    tenant: str | None = None
    job_id: str | None = None
    attempt: int | None = None

    def fields(self) -> dict[str, Any]:
        """The fields that apply (set), for a log line."""
        return {key: value for key, value in vars(self).items() if value is not None}


_current: ContextVar[LogContext | None] = ContextVar("taas_log_context", default=None)


def current() -> LogContext | None:
    return _current.get()


def start(context: LogContext) -> None:
    """Make ``context`` the current one for this task (each HTTP request runs in its own)."""
    _current.set(context)


def bind(**values: Any) -> None:
    """Fill in fields of the current context (no-op outside a request or a job)."""
    context = _current.get()
    if context is None:
        return
    for key, value in values.items():
        setattr(context, key, value)


@contextmanager
def job_context(job_id: str) -> Iterator[LogContext]:
    """A worker's context while it runs one job (the attempt is bound once claimed)."""
    context = LogContext(job_id=job_id)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
