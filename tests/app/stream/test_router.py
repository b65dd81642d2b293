"""The live stream over real HTTP: replay, resume with Last-Event-ID, live delivery, isolation,
and what a client that goes away leaves behind (nothing)."""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taas.app.core.db import session_scope
from taas.app.jobs.models import Job
from taas.app.stream.router import DISCONNECT_CHECK_SECONDS
from taas.app.stream.service import publish
from tests.app.stream.conftest import LiveApi, Received, read_events

PROGRESS = {
    "epoch": 0,
    "fraction": 0.25,
    "batches_done": 5,
    "batches_per_epoch": 10,
    "samples_per_second": 1234.5,
    "eta_seconds": 7.5,
    "points": [
        {"kind": "train", "step": 2, "epoch": 0.2, "train_loss": 2.1, "lr": 0.01},
        {"kind": "train", "step": 4, "epoch": 0.4, "train_loss": 1.7, "lr": 0.01},
        {"kind": "eval", "step": 5, "epoch": 0.5, "val_loss": 1.5, "val_accuracy": 0.61},
    ],
}
EPOCH_POINT = {"epoch": 1, "train_loss": 1.4, "train_accuracy": 0.6, "lr": 0.01}
FAILED = {"status": "failed", "error_type": "user_error", "error_message": "diverged"}


def run_attempt(live: LiveApi, job_id: str) -> None:
    """Play a worker: claim, report progress and step points, an epoch, a log line, fail."""
    live.worker(job_id, "claim", {"worker": "box-1"})
    live.worker(job_id, "heartbeat", PROGRESS)
    live.worker(job_id, "metrics", EPOCH_POINT)
    live.worker(job_id, "events", {"message": "hello from the trainer"})
    live.worker(job_id, "finish", FAILED)


def stream(live: LiveApi, path: str, auth: dict[str, str], **headers: str) -> Any:
    return httpx.stream("GET", f"{live.url}{path}", headers={**auth, **headers}, timeout=30)


def test_a_finished_job_streams_its_whole_history_then_closes(
    live_api: LiveApi, auth: dict[str, str]
) -> None:
    job_id = live_api.submit(auth)
    run_attempt(live_api, job_id)

    started = time.monotonic()
    with stream(live_api, f"/v1/jobs/{job_id}/stream", auth) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(read_events(response))  # returns only because the server closes it

    assert time.monotonic() - started < 5
    kinds = [event.event for event in events]
    assert kinds == [
        "status",  # queued
        "status",  # running
        "progress",
        "metric",
        "metric",
        "metric",
        "metric",  # the epoch point
        "log",
        "status",  # failed
        "end",
    ]
    ids = [event.id for event in events]
    assert ids == sorted(set(ids))  # increasing, none twice
    assert [e.data["status"] for e in events if e.event == "status"] == [
        "queued",
        "running",
        "failed",
    ]
    progress = next(e.data for e in events if e.event == "progress")
    assert (progress["fraction"], progress["eta_seconds"]) == (0.25, 7.5)
    assert (progress["batches_done"], progress["samples_per_second"]) == (5, 1234.5)
    steps = [e.data for e in events if e.event == "metric" and e.data["granularity"] == "step"]
    assert [(s["kind"], s["step"]) for s in steps] == [("train", 2), ("train", 4), ("eval", 5)]
    assert events[-1].data == {
        "job_id": job_id,
        "status": "failed",
        "error": {"type": "user_error", "message": "diverged"},
        "test_accuracy": None,
        "test_loss": None,
        "stop_reason": None,
    }
    assert all(event.data["job_id"] == job_id for event in events)


def test_last_event_id_resumes_with_exactly_what_was_missed(
    live_api: LiveApi, auth: dict[str, str]
) -> None:
    job_id = live_api.submit(auth)
    run_attempt(live_api, job_id)
    with stream(live_api, f"/v1/jobs/{job_id}/stream", auth) as response:
        everything = [(e.id, e.event) for e in read_events(response)]

    for cut in (1, 4, len(everything) - 1):
        with stream(live_api, f"/v1/jobs/{job_id}/stream", auth) as response:
            first = [(e.id, e.event) for e in read_events(response, limit=cut)]
        resume = {"Last-Event-ID": str(first[-1][0])}
        with stream(live_api, f"/v1/jobs/{job_id}/stream", auth, **resume) as response:
            rest = [(e.id, e.event) for e in read_events(response)]
        assert first + rest == everything, cut

    # After the end, a reconnect gets nothing and the stream closes at once.
    resume = {"Last-Event-ID": str(everything[-1][0])}
    with stream(live_api, f"/v1/jobs/{job_id}/stream", auth, **resume) as response:
        assert list(read_events(response)) == []


def test_a_report_reaches_a_connected_client_within_a_second(
    live_api: LiveApi, auth: dict[str, str]
) -> None:
    job_id = live_api.submit(auth)
    live_api.worker(job_id, "claim", {"worker": "box-1"})
    sent: dict[int, float] = {}
    received: list[Received] = []

    def listen() -> None:
        with stream(live_api, f"/v1/jobs/{job_id}/stream", auth) as response:
            for event in read_events(response, until="end"):
                received.append(event)

    listener = threading.Thread(target=listen)
    listener.start()
    wait_for(lambda: live_api.hub_subscriptions == 1)
    for batch in range(1, 21):
        sent[batch] = time.monotonic()
        beat = {**PROGRESS, "batches_done": batch, "batches_per_epoch": 100, "points": []}
        live_api.worker(job_id, "heartbeat", beat)
        time.sleep(0.05)
    # A job's end drops its superseded progress events from the database, so one the hub had
    # not read yet would never be sent (by design: a progress event is a snapshot). Wait for the
    # last report to arrive before ending the job; the ones before it arrived then too.
    wait_for(lambda: any(e.data.get("batches_done") == 20 for e in list(received)))
    live_api.worker(job_id, "finish", FAILED)
    listener.join(timeout=30)

    arrivals = {e.data["batches_done"]: e.at for e in received if e.event == "progress"}
    assert sorted(arrivals) == list(range(1, 21))  # every report, once, in order
    latencies = [arrivals[batch] - sent[batch] for batch in sent]
    print(
        f"stream latency: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} reports"
    )
    assert statistics.median(latencies) < 1.0
    assert received[-1].event == "end"


def test_the_tenant_stream_starts_now_and_carries_only_the_tenants_jobs(
    live_api: LiveApi, auth: dict[str, str], make_key: Callable[[str], str]
) -> None:
    old_job = live_api.submit(auth)
    run_attempt(live_api, old_job)  # before the stream opens: not sent
    other_auth = {"Authorization": f"Bearer {make_key('globex')}"}
    ours, theirs = live_api.submit(auth), live_api.submit(other_auth)
    received: list[Received] = []

    def listen() -> None:
        with stream(live_api, "/v1/stream", auth) as response:
            received.extend(read_events(response, until="end"))

    listener = threading.Thread(target=listen)
    listener.start()
    wait_for(lambda: live_api.hub_subscriptions == 1)
    run_attempt(live_api, theirs)
    run_attempt(live_api, ours)
    listener.join(timeout=30)

    assert {event.data["job_id"] for event in received} == {ours}
    assert received[0].data["status"] == "running"


def test_another_tenants_job_stream_is_404_and_bad_input_is_4xx(
    live_api: LiveApi, auth: dict[str, str], make_key: Callable[[str], str]
) -> None:
    job_id = live_api.submit(auth)
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    assert httpx.get(f"{live_api.url}/v1/jobs/{job_id}/stream", headers=other).status_code == 404
    assert httpx.get(f"{live_api.url}/v1/jobs/{job_id}/stream").status_code == 401
    assert httpx.get(f"{live_api.url}/v1/stream").status_code == 401
    bad = {**auth, "Last-Event-ID": "12; DROP TABLE"}
    response = httpx.get(f"{live_api.url}/v1/jobs/{job_id}/stream", headers=bad)
    assert response.status_code == 422
    assert "last-event-id" in response.text.lower()


@pytest.mark.parametrize("path", ["/v1/stream", "job"])
def test_a_client_that_goes_away_frees_its_subscription(
    live_api: LiveApi, auth: dict[str, str], path: str
) -> None:
    job_id = live_api.submit(auth)
    url = f"/v1/jobs/{job_id}/stream" if path == "job" else path
    with stream(live_api, url, auth) as response:
        assert response.status_code == 200
        wait_for(lambda: live_api.hub_subscriptions == 1)
    # The client closed its connection without reading to the end. Uvicorn cancels the
    # response at once; the quiet-stream check (DISCONNECT_CHECK_SECONDS) would take longer
    # than this allows, on a busy machine too.
    assert DISCONNECT_CHECK_SECONDS > 8
    wait_for(lambda: live_api.hub_subscriptions == 0, timeout=8)
    # With nobody listening, the hub stops reading the database.
    wait_for(lambda: live_api.app.state.stream_hub.watermark is None, timeout=3)


def test_a_client_that_goes_away_mid_replay_frees_its_subscription_at_once(
    live_api: LiveApi, auth: dict[str, str]
) -> None:
    # Thousands of events to replay: when the client goes away, the stream's generator is
    # almost surely paused at a `yield`, where cancelling the task that pulls from it does not
    # reach it. The subscription must be freed anyway, without waiting for the garbage
    # collector (disabled here, so a subscription that only it would free stays).
    job_id = live_api.submit(auth)
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        for line in range(5000):
            publish(session, job, "log", {"attempt": 1, "message": f"line {line}"})
    gc.disable()
    try:
        with stream(live_api, f"/v1/jobs/{job_id}/stream", auth) as response:
            assert [event.event for event in read_events(response, limit=2)] == ["status", "log"]
        wait_for(lambda: live_api.hub_subscriptions == 0, timeout=5)
    finally:
        gc.enable()


def test_the_step_series_and_live_progress_are_on_the_public_routes(
    live_api: LiveApi, auth: dict[str, str]
) -> None:
    job_id = live_api.submit(auth)
    live_api.worker(job_id, "claim", {"worker": "box-1"})
    live_api.worker(job_id, "heartbeat", PROGRESS)
    live_api.worker(job_id, "heartbeat", PROGRESS)  # the same points again: stored once

    job = httpx.get(f"{live_api.url}/v1/jobs/{job_id}", headers=auth).json()
    progress = job["progress"]
    assert (progress["fraction"], progress["batches_done"], progress["eta_seconds"]) == (
        0.25,
        5,
        7.5,
    )
    url = f"{live_api.url}/v1/jobs/{job_id}/metrics"
    steps = httpx.get(url, params={"granularity": "step"}, headers=auth).json()["items"]
    assert [(s["kind"], s["step"], s["epoch"]) for s in steps] == [
        ("train", 2, 0.2),
        ("train", 4, 0.4),
        ("eval", 5, 0.5),
    ]
    assert (steps[0]["train_loss"], steps[2]["val_accuracy"]) == (2.1, 0.61)
    assert httpx.get(url, headers=auth).json() == {"items": []}  # per epoch: none yet
    bad = httpx.get(url, params={"granularity": "batch"}, headers=auth)
    assert bad.status_code == 422


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_an_ended_jobs_stream_keeps_only_its_last_progress(
    live_api: LiveApi, auth: dict[str, str]
) -> None:
    job_id = live_api.submit(auth)
    live_api.worker(job_id, "claim", {"worker": "box-1"})
    for batch in (2, 4, 6):
        live_api.worker(job_id, "heartbeat", {**PROGRESS, "batches_done": batch, "points": []})
    live_api.worker(job_id, "finish", FAILED)

    with stream(live_api, f"/v1/jobs/{job_id}/stream", auth) as response:
        progress = [e.data for e in read_events(response) if e.event == "progress"]
    assert [p["batches_done"] for p in progress] == [6]
