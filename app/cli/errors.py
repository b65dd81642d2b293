"""What the CLI says when a request fails: one sentence a person can act on, never a traceback.

A rejected job spec (422) is one line per field, with a did-you-mean for a near-miss of a field
name or of one of a field's allowed values, found in the spec models of app/spec/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from taas.app.spec.suggestions import spec_hint, walk_spec
from taas.errors import ApiError, ServiceUnreachable, names_its_field


@dataclass(frozen=True)
class Target:
    """Where the CLI sent the request, and what a message about it needs to know."""

    api_url: str
    key_origin: str  # "TAAS_API_KEY" or the key file's path
    spec: dict[str, Any] | None = None  # the job spec sent, for did-you-mean on its values
    job_id: str | None = None


def explain(error: Exception, target: Target) -> str:
    if isinstance(error, ApiError):
        return explain_answer(error, target)
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return (
            f"cannot reach the taas API at {target.api_url} ({short_reason(error)}): is "
            "`taas serve` running? set TAAS_API_URL to point elsewhere"
        )
    if isinstance(error, httpx.TimeoutException):
        return f"the taas API at {target.api_url} did not answer in time ({short_reason(error)})"
    return f"the connection to the taas API at {target.api_url} failed: {short_reason(error)}"


def short_reason(error: BaseException) -> str:
    """What went wrong in a few words: `connection refused`."""
    if isinstance(error, ServiceUnreachable) and error.__cause__ is not None:
        error = error.__cause__  # the client's own sentence is for Python users; say the cause
    # "[Errno 111] Connection refused" -> "connection refused"
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(error)).strip() or type(error).__name__
    return text[:1].lower() + text[1:]


def explain_answer(error: ApiError, target: Target) -> str:
    detail = error.detail
    if error.status_code == 401:
        origin = (
            "the key in TAAS_API_KEY"
            if target.key_origin == "TAAS_API_KEY"
            else f"the key saved in {target.key_origin} by `taas serve`"
        )
        return (
            f"the API key was refused ({detail}): the CLI sent {origin}; set TAAS_API_KEY to a "
            "valid key (`taas keys create --tenant NAME` makes one)"
        )
    if error.status_code == 404 and target.job_id and "job" in str(detail):
        return f"unknown job {target.job_id}: no job with that id is yours (see `taas jobs`)"
    if error.status_code == 422 and isinstance(detail, list):
        what = "job spec" if target.spec is not None else "request"
        lines = [f"the server refused the {what} (HTTP 422):"]
        lines += [f"  {line}" for line in field_errors(detail, target.spec)]
        return "\n".join(lines)
    return f"{detail} (HTTP {error.status_code})"


def field_errors(detail: list[dict[str, Any]], spec: dict[str, Any] | None) -> list[str]:
    """One line per rejected field: `training.lr: Input should be greater than 0`."""
    return [_field_error(item, spec) for item in detail]


def _field_error(item: dict[str, Any], spec: dict[str, Any] | None) -> str:
    loc = [part for part in item.get("loc", []) if part != "body"]
    message = str(item.get("msg", ""))
    if spec is None or item.get("loc", [None])[0] != "body":
        where = ".".join(map(str, loc)) or "request"
        return message if names_its_field(message, where) else f"{where}: {message}"
    shown = walk_spec(loc).path or "spec"
    if item.get("type") == "extra_forbidden":  # "Extra inputs are not permitted; did you ..."
        message = "unknown field" + (message[message.index(";") :] if ";" in message else "")
    # The server's message carries its did-you-mean already (app/spec/suggestions.py); one
    # from an older server is added here.
    if "did you mean" not in message:
        message += spec_hint(item, spec)
    if message.startswith(f"{shown}="):  # a limit message names the field and value itself
        return message
    return f"{shown}: {message}"
