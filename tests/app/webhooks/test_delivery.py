"""Deliveries: written with the change they tell of, sent signed to a real receiver, retried on
the schedule with the same webhook-id, disabled by 410, claimed by one sender at a time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from taas.app.core import migrate
from taas.app.core.config import get_settings
from taas.app.core.db import session_scope, utcnow
from taas.app.jobs.models import Job
from taas.app.jobs.service import record_event, transition
from taas.app.webhooks.events import new_delivery_id
from taas.app.webhooks.models import WebhookDelivery, WebhookEndpoint
from taas.app.webhooks.sender import claim_due, send_due
from taas.app.webhooks.signing import new_secret
from tests.app.internal.test_router import claimed_job, finish
from tests.app.sweeps.test_router import submit as submit_sweep
from tests.app.webhooks.conftest import Receiver
from tests.conftest import TINY_SYNTHETIC, clear_caches

ALL_EVENTS = ["job.succeeded", "job.failed", "job.cancelled", "job.running", "sweep.completed"]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def add_webhook(
    api: TestClient, auth: dict[str, str], url: str, events: list[str] | None = None
) -> dict[str, Any]:
    body = {"url": url, "events": events or ALL_EVENTS}
    response = api.post("/v1/webhooks", json=body, headers=auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def submit_job(api: TestClient, auth: dict[str, str]) -> str:
    response = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def cancel_job(api: TestClient, auth: dict[str, str]) -> str:
    """A queued job cancelled at once: one job.cancelled event."""
    job_id = submit_job(api, auth)
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=auth).status_code == 202
    return job_id


def deliveries(api: TestClient, auth: dict[str, str], webhook_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def delivery_count() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


def make_due_now() -> None:
    """Jump the clock: every pending delivery's next attempt is due."""
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "pending")
            .values(next_attempt_at=utcnow())
        )


def verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    """What a receiver does (Standard Webhooks): recompute the signature and compare."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_deliveries_are_written_only_when_the_transition_commits(
    api: TestClient, auth: dict[str, str]
) -> None:
    add_webhook(api, auth, "https://hooks.example.com/taas", ["job.cancelled"])
    job_id = submit_job(api, auth)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert transition(session, job, ["queued"], "cancelled", finished_at=utcnow())
        record_event(session, job, "cancelled", status="cancelled")
        session.flush()
        session.rollback()
    assert delivery_count() == 0
    assert api.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "queued"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert transition(session, job, ["queued"], "cancelled", finished_at=utcnow())
        record_event(session, job, "cancelled", status="cancelled")
    assert delivery_count() == 1


def test_only_the_events_an_endpoint_asked_for_are_delivered(
    api: TestClient, auth: dict[str, str]
) -> None:
    succeeded = add_webhook(api, auth, "https://hooks.example.com/a", ["job.succeeded"])
    cancelled = add_webhook(api, auth, "https://hooks.example.com/b", ["job.cancelled"])
    job_id = cancel_job(api, auth)
    assert deliveries(api, auth, succeeded["id"]) == []
    [delivery] = deliveries(api, auth, cancelled["id"])
    assert delivery["event_type"] == "job.cancelled"
    assert delivery["status"] == "pending"
    assert delivery["id"].startswith("msg_")
    with session_scope() as session:
        body = json.loads(session.get(WebhookDelivery, delivery["id"]).body)  # type: ignore[union-attr]
    assert body["type"] == "job.cancelled"
    assert body["data"]["job_id"] == job_id
    assert body["data"]["status"] == "cancelled"


def test_another_tenants_events_are_not_delivered(
    api: TestClient, auth: dict[str, str], make_key: Any
) -> None:
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    add_webhook(api, other, "https://hooks.example.com/globex")
    cancel_job(api, auth)
    assert delivery_count() == 0


def test_a_job_event_arrives_signed_at_the_receiver(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    receiver: Receiver,
    allow_private: None,
    pool: ThreadPoolExecutor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    webhook = add_webhook(api, auth, receiver.url(), ["job.failed"])
    job_id = claimed_job(api, auth, worker_auth)
    message = "CUDA out of memory"
    response = finish(
        api, worker_auth, job_id, status="failed", error_type="infra", error_message=message
    )
    assert response.status_code == 200, response.text
    assert list(send_due(get_settings(), pool).values()) == ["delivered"]

    [received] = receiver.received
    verify(webhook["secret"], received.headers, received.body)
    # Connected to the checked address, with the receiver's name as Host.
    assert received.headers["Host"] == f"receiver.test:{receiver.port}"
    assert received.headers["Content-Type"] == "application/json"
    body = json.loads(received.body)
    assert body["type"] == "job.failed"
    assert body["data"]["job_id"] == job_id
    assert body["data"]["error"] == {"type": "infra", "message": message}
    [delivery] = deliveries(api, auth, webhook["id"])
    assert delivery["id"] == received.headers["webhook-id"]
    assert delivery["status"] == "delivered"
    assert (delivery["attempts"], delivery["last_status_code"]) == (1, 200)
    assert delivery["last_response"] == "ok"
    assert webhook["secret"] not in caplog.text
    assert webhook["secret"].removeprefix("whsec_") not in caplog.text


def test_a_failing_receiver_gets_retries_with_the_same_id_on_the_schedule(
    api: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    allow_private: None,
    pool: ThreadPoolExecutor,
) -> None:
    webhook = add_webhook(api, auth, receiver.url(), ["job.cancelled"])
    receiver.answer(500, body=b"database down")
    receiver.answer(500)
    receiver.answer(200)
    cancel_job(api, auth)
    expected_waits = [5.0, 300.0]
    for wait in expected_waits:
        before = utcnow()
        assert list(send_due(get_settings(), pool).values()) == ["pending"]
        [delivery] = deliveries(api, auth, webhook["id"])
        assert delivery["last_status_code"] == 500
        assert delivery["last_error"] == "HTTP 500"
        waited = (_parse(delivery["next_attempt_at"]) - before).total_seconds()
        assert wait <= waited <= wait * 1.1 + 1, (wait, waited)
        assert send_due(get_settings(), pool) == {}  # not due yet
        make_due_now()
    assert list(send_due(get_settings(), pool).values()) == ["delivered"]
    [delivery] = deliveries(api, auth, webhook["id"])
    assert delivery["attempts"] == 3
    assert delivery["last_response"] is None or delivery["last_response"] == ""
    ids = {item.headers["webhook-id"] for item in receiver.received}
    assert ids == {delivery["id"]}
    assert len({item.body for item in receiver.received}) == 1  # the same bytes every time
    for item in receiver.received:
        verify(webhook["secret"], item.headers, item.body)


def test_a_longer_retry_after_is_honoured(
    api: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    allow_private: None,
    pool: ThreadPoolExecutor,
) -> None:
    webhook = add_webhook(api, auth, receiver.url(), ["job.cancelled"])
    receiver.answer(503, {"Retry-After": "120"})
    cancel_job(api, auth)
    before = utcnow()
    send_due(get_settings(), pool)
    [delivery] = deliveries(api, auth, webhook["id"])
    waited = (_parse(delivery["next_attempt_at"]) - before).total_seconds()
    assert 119 <= waited <= 122


def test_a_410_disables_the_endpoint(
    api: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    allow_private: None,
    pool: ThreadPoolExecutor,
) -> None:
    webhook = add_webhook(api, auth, receiver.url(), ["job.cancelled"])
    receiver.answer(410)
    cancel_job(api, auth)
    cancel_job(api, auth)
    send_due(get_settings(), pool)
    shown = api.get(f"/v1/webhooks/{webhook['id']}", headers=auth).json()
    assert shown["enabled"] is False
    assert "410" in shown["disabled_reason"]
    assert {item["status"] for item in deliveries(api, auth, webhook["id"])} == {"failed"}
    sent = len(receiver.received)
    cancel_job(api, auth)  # no more deliveries to it
    assert len(deliveries(api, auth, webhook["id"])) == 2
    assert send_due(get_settings(), pool) == {}
    assert len(receiver.received) == sent


def test_a_redirect_is_a_failure_and_is_not_followed(
    api: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    allow_private: None,
    pool: ThreadPoolExecutor,
) -> None:
    webhook = add_webhook(api, auth, receiver.url(), ["job.cancelled"])
    receiver.answer(302, {"Location": receiver.url(path="/elsewhere")})
    cancel_job(api, auth)
    assert list(send_due(get_settings(), pool).values()) == ["pending"]
    assert [item.path for item in receiver.received] == ["/hook"]
    [delivery] = deliveries(api, auth, webhook["id"])
    assert "redirects are not followed" in delivery["last_error"]


def test_it_gives_up_after_the_last_scheduled_attempt(
    api: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    allow_private: None,
    pool: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAAS_WEBHOOK_RETRY_SCHEDULE", "0,0")
    get_settings.cache_clear()
    webhook = add_webhook(api, auth, receiver.url(), ["job.cancelled"])
    receiver.answer(500)
    cancel_job(api, auth)
    assert list(send_due(get_settings(), pool).values()) == ["pending"]
    assert list(send_due(get_settings(), pool).values()) == ["gave_up"]
    [delivery] = deliveries(api, auth, webhook["id"])
    assert (delivery["status"], delivery["attempts"]) == ("gave_up", 2)
    assert delivery["next_attempt_at"] is None


def test_a_connection_error_is_retried(
    api: TestClient, auth: dict[str, str], allow_private: None, pool: ThreadPoolExecutor
) -> None:
    from tests.e2e.processes import free_port

    webhook = add_webhook(api, auth, f"http://receiver.test:{free_port()}/hook", ["job.cancelled"])
    cancel_job(api, auth)
    assert list(send_due(get_settings(), pool).values()) == ["pending"]
    [delivery] = deliveries(api, auth, webhook["id"])
    assert delivery["last_status_code"] is None
    assert "ConnectError" in delivery["last_error"]


def test_only_a_short_prefix_of_the_answer_is_kept(
    api: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    allow_private: None,
    pool: ThreadPoolExecutor,
) -> None:
    webhook = add_webhook(api, auth, receiver.url(), ["job.cancelled"])
    receiver.answer(200, body=b"x" * 100_000)
    cancel_job(api, auth)
    send_due(get_settings(), pool)
    [delivery] = deliveries(api, auth, webhook["id"])
    assert delivery["last_response"] == "x" * 256


def test_the_address_is_checked_again_at_send_time(
    api: TestClient,
    auth: dict[str, str],
    fake_dns: dict[str, list[str]],
    pool: ThreadPoolExecutor,
) -> None:
    webhook = add_webhook(api, auth, "http://hooks.example.com/taas", ["job.cancelled"])
    fake_dns["hooks.example.com"] = ["127.0.0.1"]  # the name now points inside
    cancel_job(api, auth)
    assert list(send_due(get_settings(), pool).values()) == ["pending"]
    [delivery] = deliveries(api, auth, webhook["id"])
    assert "127.0.0.1 (loopback)" in delivery["last_error"]


def test_a_sweeps_end_is_delivered(api: TestClient, auth: dict[str, str]) -> None:
    webhook = add_webhook(api, auth, "https://hooks.example.com/taas", ["sweep.completed"])
    sweep = submit_sweep(api, auth)
    assert api.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=auth).status_code == 202
    [delivery] = deliveries(api, auth, webhook["id"])
    assert delivery["event_type"] == "sweep.completed"
    with session_scope() as session:
        body = json.loads(session.get(WebhookDelivery, delivery["id"]).body)  # type: ignore[union-attr]
    assert body["data"]["sweep_id"] == sweep["id"]
    assert body["data"]["status"] == "cancelled"


def _parse(moment: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(moment)


@pytest.fixture
def on_postgres(
    taas_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("TAAS_DATABASE_URL", postgres_url)
    clear_caches()
    migrate.upgrade()
    yield
    clear_caches()


@pytest.mark.postgres
def test_two_senders_never_claim_the_same_delivery(on_postgres: None) -> None:
    from taas.app.auth.service import create_api_key

    with session_scope() as session:
        create_api_key(session, "acme")
    with session_scope() as session:
        tenant_id = session.scalar(select(Job.tenant_id).limit(1)) or 1
        endpoint = WebhookEndpoint(
            id="wh_race",
            tenant_id=tenant_id,
            url="https://hooks.example.com/",
            events=ALL_EVENTS,
            secret=new_secret(),
        )
        session.add(endpoint)
        session.flush()
        for _ in range(40):
            session.add(
                WebhookDelivery(
                    id=new_delivery_id(),
                    endpoint_id="wh_race",
                    event_type="job.failed",
                    body="{}",
                    status="pending",
                    attempts=0,
                    next_attempt_at=utcnow() - timedelta(seconds=1),
                )
            )
    settings = get_settings()
    start = threading.Barrier(4)
    claimed: list[list[str]] = []

    def claim() -> None:
        start.wait()
        claimed.append([claim.id for claim in claim_due(settings, limit=15)])

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [delivery_id for ids in claimed for delivery_id in ids]
    assert len(everything) == len(set(everything)) == 40
