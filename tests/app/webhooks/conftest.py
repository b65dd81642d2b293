"""Webhook fixtures: a resolver the tests control, and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from taas.app.core.config import get_settings
from taas.app.webhooks import addresses

# Names the tests resolve; anything else is an error (no test reaches a real DNS server).
DNS = {
    "hooks.example.com": ["93.184.215.14"],
    "receiver.test": ["127.0.0.1"],
    "rebinding.example.com": ["127.0.0.1"],
    "mixed.example.com": ["93.184.215.14", "10.0.0.8"],
}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Replace name resolution at its boundary; tests may edit the returned table."""
    table = {name: list(ips) for name, ips in DNS.items()}

    def resolve(host: str, port: int) -> list[addresses.IPAddress]:
        if host not in table:
            raise addresses.UnsafeUrl(f"host {host!r} does not resolve")
        return [ipaddress.ip_address(ip) for ip in table[host]]

    monkeypatch.setattr(addresses, "resolve", resolve)
    return table


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAAS_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next of ``answers`` (the last one repeats)."""

    port: int
    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def url(self, host: str = "receiver.test", path: str = "/hook") -> str:
        return f"http://{host}:{self.port}{path}"

    def answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.answers.append((status, headers or {}, body))

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(item.body) for item in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            state.received.append(Received(self.path, dict(self.headers.items()), body))
            answers = state.answers or [(200, {}, b"ok")]
            status, headers, reply = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


BearerFor = Callable[[str], dict[str, str]]


@pytest.fixture
def bearer_for(make_key: Callable[[str], str]) -> BearerFor:
    return lambda tenant: {"Authorization": f"Bearer {make_key(tenant)}"}
