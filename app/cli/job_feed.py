"""One job's events as they happen: from its event stream, or by polling an older server.

The stream (GET /v1/jobs/{id}/stream) gives status, progress, metric, log and end events. When
it drops, the feed reconnects with Last-Event-ID and so misses nothing and repeats nothing. A
server without the stream (404 or 405 from the route, or an answer that is not an event stream)
or one whose stream cannot be opened at all is polled instead (GET /v1/jobs/{id}, its events and
metrics), and the same kinds of events are made from what changed between two polls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError

from taas.app.cli.errors import short_reason
from taas.client import TERMINAL, Client
from taas.errors import ApiError

RECONNECT_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0)  # about 30 s in all, then give up
NO_STREAM = frozenset({404, 405})


class StreamLost(Exception):
    """The stream kept ending before the job's end and could not be resumed."""


@dataclass(frozen=True)
class JobEvent:
    type: str  # status | progress | metric | log | end
    data: dict[str, Any]
    id: str | None = None


Notice = Callable[[str], None]


def job_events(
    client: Client,
    job_id: str,
    *,
    poll_seconds: float = 1.0,
    notice: Notice | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[JobEvent]:
    """Every event of the job from its first until its ``end`` (the last one yielded)."""
    say = notice or (lambda _message: None)
    last_id: str | None = None
    failures = 0
    while True:
        error: Exception
        try:
            for event_id, kind, data in client.stream(job_id, last_id):
                last_id, failures = event_id or last_id, 0
                yield JobEvent(kind, data, event_id)
                if kind == "end":
                    return
            error = StreamLost(f"the server closed the stream of {job_id} early")
        except (ApiError, SSEError, httpx.TransportError) as failed:
            error = failed
        if last_id is None and _no_stream(error):  # polling says plainly what is wrong, if any
            if isinstance(error, httpx.TransportError):
                say(f"no event stream ({short_reason(error)}); polling instead")
            yield from _polled(client, job_id, poll_seconds, sleep)
            return
        if isinstance(error, ApiError | SSEError) or failures == len(RECONNECT_PAUSES):
            raise error
        ended = _ended(client, job_id)
        if ended is not None:  # it ended, and its end is not in what the stream gave
            yield ended
            return
        say(f"stream lost ({short_reason(error)}); reconnecting after event {last_id}")
        sleep(RECONNECT_PAUSES[failures])
        failures += 1


def _no_stream(error: Exception) -> bool:
    """Whether a stream that gave nothing means a server to poll instead: it has no stream
    route (404, 405), answers something else than events, cannot be reached, or said nothing."""
    if isinstance(error, ApiError):
        return error.status_code in NO_STREAM
    return True


def _ended(client: Client, job_id: str) -> JobEvent | None:
    """The end of a job that has ended; None while it runs or when the server is not there."""
    try:
        job = client.job(job_id)
    except httpx.TransportError:
        return None
    return JobEvent("end", end_data(job)) if job["status"] in TERMINAL else None


def _polled(
    client: Client, job_id: str, poll_seconds: float, sleep: Callable[[float], None]
) -> Iterator[JobEvent]:
    """The events of a job made by polling it: what changed since the previous poll."""
    seen_events, seen_epochs = 0, 0
    last_progress: dict[str, Any] | None = None
    while True:
        job = client.job(job_id)
        new_items = client.events(job_id)[seen_events:]
        seen_events += len(new_items)
        # The job's end is said after the progress and metrics that came before it.
        ending = next((i for i, item in enumerate(new_items) if item["status"] in TERMINAL), None)
        for item in new_items[:ending]:
            yield _event_from_item(job_id, item)
        if job["progress"] != last_progress:
            last_progress = job["progress"]
            yield JobEvent("progress", {"job_id": job_id, **job["progress"]})
        latest = job["metrics"]["latest"]
        if latest is not None and latest["epoch"] > seen_epochs:
            for point in client.metrics(job_id):
                if point["epoch"] > seen_epochs:
                    yield JobEvent("metric", {"job_id": job_id, "granularity": "epoch", **point})
            seen_epochs = latest["epoch"]
        for item in new_items[ending:] if ending is not None else []:
            yield _event_from_item(job_id, item)
        if job["status"] in TERMINAL:
            yield JobEvent("end", end_data(job))
            return
        sleep(poll_seconds)


def _event_from_item(job_id: str, item: dict[str, Any]) -> JobEvent:
    """An entry of GET /v1/jobs/{id}/events as the stream's status or log event."""
    data = {
        "job_id": job_id,
        "attempt": item.get("attempt"),
        "message": item.get("message") or "",
        "created_at": item.get("created_at"),
    }
    if item.get("kind") == "status":
        return JobEvent("status", {**data, "status": item.get("status")})
    return JobEvent("log", data)


def end_data(job: dict[str, Any]) -> dict[str, Any]:
    """The stream's ``end`` event for a job that has ended."""
    metrics = job["metrics"]
    return {
        "job_id": job["id"],
        "status": job["status"],
        "error": job["error"],
        "test_accuracy": metrics["test_accuracy"],
        "test_loss": metrics["test_loss"],
        "stop_reason": job.get("stop_reason"),
    }


def history_items(events: list[dict[str, Any]], job_id: str) -> list[JobEvent]:
    """GET /v1/jobs/{id}/events as status and log events (what `taas logs` prints)."""
    return [_event_from_item(job_id, item) for item in events]
