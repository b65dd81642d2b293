"""A job's event feed: the stream parsed, a dropped stream resumed with Last-Event-ID (nothing
lost, nothing repeated), and an older server without the stream polled instead.

The server here is a scripted httpx transport: a real server cannot be told to drop a stream
half-way through an event, and the end-to-end tests run a real one (tests/e2e/test_cli.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from taas.app.cli.job_feed import job_events
from taas.client import Client
from taas.errors import ApiError

JOB = "job_" + "a" * 24


def frame(event_id: int, kind: str, **data: Any) -> bytes:
    return (
        f"id: {event_id}\nevent: {kind}\ndata: {json.dumps({'job_id': JOB, **data})}\n\n".encode()
    )


EVENTS = [
    frame(1, "status", status="queued", attempt=0, message="job accepted and queued"),
    frame(2, "status", status="running", attempt=1, message="attempt 1 started"),
    b": keep-alive\n\n",
    frame(3, "progress", epoch=0, epochs=2, fraction=0.5, batches_done=5, batches_per_epoch=10),
    frame(4, "end", status="succeeded", error=None, test_accuracy=0.91, test_loss=0.3),
]


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> Client:
    client = Client("http://taas.test", "taas_key")
    client.http = httpx.Client(
        base_url="http://taas.test",
        headers={"Authorization": "Bearer taas_key"},
        transport=httpx.MockTransport(handler),
    )
    return client


def event_stream(chunks: list[bytes], then: Exception | None = None) -> httpx.Response:
    def body() -> Iterator[bytes]:
        yield from chunks
        if then is not None:
            raise then

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def no_sleep(_seconds: float) -> None:
    pass


def test_stream_yields_id_type_and_data_and_sends_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return event_stream(EVENTS)

    events = list(client_for(handler).stream(JOB))

    assert [(event_id, kind) for event_id, kind, _data in events] == [
        ("1", "status"),
        ("2", "status"),
        ("3", "progress"),
        ("4", "end"),
    ]
    assert events[2][2]["fraction"] == 0.5
    assert seen[0].url.path == f"/v1/jobs/{JOB}/stream"
    assert seen[0].headers["Authorization"] == "Bearer taas_key"
    assert "Last-Event-ID" not in seen[0].headers


def test_a_dropped_stream_resumes_after_the_last_event_it_gave() -> None:
    asked_after: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/stream"):
            return httpx.Response(200, json={"id": JOB, "status": "running"})
        asked_after.append(request.headers.get("Last-Event-ID"))
        if len(asked_after) == 1:
            return event_stream(EVENTS[:2], then=httpx.ReadError("connection reset by peer"))
        return event_stream(EVENTS[2:])

    notices: list[str] = []
    events = list(job_events(client_for(handler), JOB, notice=notices.append, sleep=no_sleep))

    assert asked_after == [None, "2"]
    assert [event.id for event in events] == ["1", "2", "3", "4"]  # none lost, none twice
    assert events[-1].type == "end"
    assert notices == ["stream lost (connection reset by peer); reconnecting after event 2"]


def test_a_stream_that_keeps_failing_gives_up_with_the_connection_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return event_stream(EVENTS[:1])  # closes early, then the server is gone
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(httpx.ConnectError):
        list(job_events(client_for(handler), JOB, sleep=no_sleep))
    assert 5 < calls < 20  # retried a while, not forever


def test_a_stream_without_the_end_of_a_job_that_ended_ends_with_the_job() -> None:
    job = {
        "id": JOB,
        "status": "cancelled",
        "metrics": {"test_accuracy": None, "test_loss": None},
        "error": {"type": "cancelled", "message": "cancelled by the user"},
        "stop_reason": "cancelled",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stream"):
            return event_stream(EVENTS[:2])  # closes without an end event
        return httpx.Response(200, json=job)

    events = list(job_events(client_for(handler), JOB, sleep=no_sleep))

    assert [event.type for event in events] == ["status", "status", "end"]
    assert events[-1].data["status"] == "cancelled"
    assert events[-1].data["error"]["message"] == "cancelled by the user"


def older_server(job: dict[str, Any], events: list[dict[str, Any]]) -> httpx.MockTransport:
    """A server without the stream route: only the job, its events and its metrics."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/stream"):
            return httpx.Response(404, json={"detail": "Not Found"})
        if path.endswith("/events"):
            return httpx.Response(200, json={"items": events})
        if path.endswith("/metrics"):
            return httpx.Response(200, json={"items": [job["metrics"]["latest"]]})
        return httpx.Response(200, json=job)

    return httpx.MockTransport(handler)


def test_an_older_server_is_polled_and_gives_the_same_kinds_of_events() -> None:
    point = {"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.8, "val_loss": 0.6}
    job = {
        "id": JOB,
        "status": "succeeded",
        "progress": {"epoch": 1, "epochs": 1, "fraction": 1.0},
        "metrics": {"latest": point, "test_accuracy": 0.81, "test_loss": 0.55},
        "error": None,
    }
    history = [
        {"kind": "status", "status": "queued", "attempt": None, "message": "queued"},
        {"kind": "message", "status": None, "attempt": 1, "message": "training on cpu"},
        {"kind": "status", "status": "succeeded", "attempt": 1, "message": "succeeded"},
    ]
    client = client_for(lambda request: httpx.Response(500))
    client.http._transport = older_server(job, history)

    events = list(job_events(client, JOB, sleep=no_sleep))

    assert [event.type for event in events] == [
        "status",
        "log",
        "progress",
        "metric",
        "status",  # the end is said after the epoch it ended with
        "end",
    ]
    assert events[3].data["val_accuracy"] == 0.8
    assert events[-1].data == {
        "job_id": JOB,
        "status": "succeeded",
        "error": None,
        "test_accuracy": 0.81,
        "test_loss": 0.55,
        "stop_reason": None,
    }


def test_an_unknown_job_on_an_older_server_is_the_job_route_404() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": f"job {JOB!r} not found"})

    with pytest.raises(ApiError) as raised:
        list(job_events(client_for(handler), JOB, sleep=no_sleep))
    assert raised.value.status_code == 404
    assert "not found" in str(raised.value.detail)
