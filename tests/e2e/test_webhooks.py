"""Webhooks end to end, on `taas serve` and on PostgreSQL + Redis: the API sends signed
deliveries of a real job to a real receiver on 127.0.0.1, retries a failing receiver with the
same webhook-id, and a job's end arrives within 2 s of the job's finished_at."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TINY_SYNTHETIC
from tests.e2e.conftest import Deployment, start_embedded, start_production

# Half a minute or more each: started first in a parallel session.
pytestmark = pytest.mark.slow

FLAKY_FAILURES = 2  # /flaky answers 500 this many times, then 200


@dataclass
class Arrival:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival


@dataclass
class Receiver:
    port: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Arrival]:
        with self.lock:
            return [arrival for arrival in self.arrivals if arrival.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            arrival = Arrival(self.path, dict(self.headers.items()), body, time.time())
            with state.lock:
                state.arrivals.append(arrival)
                tries = len([item for item in state.arrivals if item.path == self.path])
            failing = self.path == "/flaky" and tries <= FLAKY_FAILURES
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


WEBHOOK_SETTINGS = {
    "TAAS_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on 127.0.0.1
    "TAAS_WEBHOOK_RETRY_SCHEDULE": "0,0.5,0.5",  # seconds, not the spec's minutes
}


@pytest.fixture(params=["embedded", "production"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """`taas serve`, or `taas api` + `taas worker` on PostgreSQL and Redis."""
    if request.param == "embedded":
        started = start_embedded(tmp_path, **WEBHOOK_SETTINGS)
    else:
        postgres_url = request.getfixturevalue("postgres_url")
        started = start_production(tmp_path, postgres_url, **WEBHOOK_SETTINGS)
    yield started
    started.stop()


def verify(secret: str, arrival: Arrival) -> None:
    """A receiver's check, per Standard Webhooks, written independently of the service."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    headers = {name.lower(): value for name, value in arrival.headers.items()}
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + arrival.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert expected in [part.split(",", 1)[1] for part in headers["webhook-signature"].split()]
    assert abs(time.time() - int(headers["webhook-timestamp"])) < 60


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_job_events_are_delivered_signed_retried_and_promptly(
    deployment: Deployment, receiver: Receiver
) -> None:
    key = deployment.create_key("acme")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=deployment.api_url, headers=headers, timeout=30) as api:
        check_deliveries(api, receiver)


def check_deliveries(api: httpx.Client, receiver: Receiver) -> None:
    hooks = {
        path: api.post("/v1/webhooks", json={"url": receiver.url(path), "events": events})
        for path, events in [
            ("/ok", ["job.running", "job.succeeded"]),
            ("/flaky", ["job.succeeded"]),
        ]
    }
    assert {response.status_code for response in hooks.values()} == {201}
    secrets = {path: response.json()["secret"] for path, response in hooks.items()}

    job_id = api.post("/v1/jobs", json=TINY_SYNTHETIC).json()["id"]
    job = wait_for(
        lambda: (body := api.get(f"/v1/jobs/{job_id}").json())["status"] == "succeeded" and body,
        240,
        "the job to succeed",
    )
    finished_at = datetime.fromisoformat(job["finished_at"]).timestamp()

    def ended() -> list[Arrival]:
        return [a for a in receiver.at("/ok") if json.loads(a.body)["type"] == "job.succeeded"]

    [end] = wait_for(ended, 10, "job.succeeded at /ok")
    assert end.at - finished_at <= 2.0, f"arrived {end.at - finished_at:.2f} s after the end"
    types = [json.loads(arrival.body)["type"] for arrival in receiver.at("/ok")]
    assert types == ["job.running", "job.succeeded"]
    for arrival in receiver.at("/ok"):
        verify(secrets["/ok"], arrival)
    payload = json.loads(end.body)
    assert payload["data"]["job_id"] == job_id
    assert payload["data"]["status"] == "succeeded"
    assert payload["data"]["test_accuracy"] == job["metrics"]["test_accuracy"]
    print("sample delivery:", json.dumps({"headers": end.headers, "body": payload}, indent=2))

    tries = wait_for(
        lambda: len(receiver.at("/flaky")) > FLAKY_FAILURES and receiver.at("/flaky"),
        15,
        "the third try at /flaky",
    )
    assert len({arrival.headers["webhook-id"] for arrival in tries}) == 1
    for arrival in tries:
        verify(secrets["/flaky"], arrival)
    flaky_id = hooks["/flaky"].json()["id"]
    delivery = wait_for(
        lambda: [
            item
            for item in api.get(f"/v1/webhooks/{flaky_id}/deliveries").json()["items"]
            if item["status"] == "delivered"
        ],
        5,
        "the flaky delivery to show as delivered",
    )[0]
    assert delivery["attempts"] == FLAKY_FAILURES + 1
    assert delivery["id"] == tries[0].headers["webhook-id"]
