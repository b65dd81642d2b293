"""A real HTTP server (uvicorn in a thread) for stream tests: a stream is an open connection,
which an in-process test client cannot hold while the test goes on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import TINY_SYNTHETIC, WORKER_TOKEN
from tests.e2e.processes import free_port

INTERNAL = "/internal/v1/jobs"
WORKER_AUTH = {"Authorization": f"Bearer {WORKER_TOKEN}"}


@dataclass
class LiveApi:
    url: str
    app: Any

    @property
    def hub_subscriptions(self) -> int:
        return len(self.app.state.stream_hub.subscriptions)

    def submit(self, auth: dict[str, str]) -> str:
        response = httpx.post(f"{self.url}/v1/jobs", json=TINY_SYNTHETIC, headers=auth)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def worker(self, job_id: str, action: str, body: dict[str, Any]) -> httpx.Response:
        """POST as the worker of attempt 1: claim, or attempts/1/<action>."""
        path = "claim" if action == "claim" else f"attempts/1/{action}"
        response = httpx.post(
            f"{self.url}{INTERNAL}/{job_id}/{path}", json=body, headers=WORKER_AUTH
        )
        assert response.status_code == 200, response.text
        return response


def start_server(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def live_api(taas_home: Path) -> Iterator[LiveApi]:
    from taas.app.main import create_app

    app = create_app()
    server, thread, url = start_server(app)
    yield LiveApi(url, app)
    server.should_exit = True
    thread.join(timeout=15)


@dataclass
class Received:
    id: int
    event: str
    data: dict[str, Any]
    at: float  # time.monotonic() when it arrived


def read_events(response: httpx.Response, until: str | None = None, limit: int = 10_000):  # type: ignore[no-untyped-def]
    """Parse Server-Sent Events off a streaming response (one JSON data line each)."""
    fields: dict[str, str] = {}
    count = 0
    for line in response.iter_lines():
        if line.startswith(":"):
            continue  # a comment: keep-alive
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if not fields:
            continue
        event = Received(
            int(fields["id"]), fields["event"], json.loads(fields["data"]), time.monotonic()
        )
        fields = {}
        yield event
        count += 1
        if event.event == until or count >= limit:
            return
