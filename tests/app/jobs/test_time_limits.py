"""Time limits: each attempt gets a deadline at its claim, the broker message carries Celery's
hard limit, and the reconciler fails a job whose worker did not stop it in time as `timeout`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taas.app.core.config import Settings, get_settings
from taas.app.core.db import session_scope, utcnow
from taas.app.jobs.models import Attempt, Job
from taas.app.jobs.time_limits import attempt_time_limit, describe_time_limit, format_seconds
from taas.app.scheduling.reconciler import reconcile
from tests.conftest import TINY_SYNTHETIC

WITH_BUDGET = {**TINY_SYNTHETIC, "training": {**TINY_SYNTHETIC["training"], "max_seconds": 90}}


@pytest.fixture(autouse=True)
def _workers_are_alive(live_worker: Callable[..., None]) -> None:
    """Jobs go to the broker only for free slots of live workers (app/scheduling)."""


def settings(**overrides: object) -> Settings:
    return get_settings().model_copy(update=overrides)


def submit(api: TestClient, auth: dict[str, str], spec: dict[str, Any]) -> str:
    response = api.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def claim(api: TestClient, worker: dict[str, str], job_id: str) -> dict[str, Any]:
    response = api.post(f"/internal/v1/jobs/{job_id}/claim", json={"worker": "w"}, headers=worker)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def job(api: TestClient, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=auth).json()
    return body


def overdue(job_id: str, seconds: float) -> None:
    """Pretend the live attempt's deadline passed ``seconds`` ago (its heartbeat stays fresh)."""
    with session_scope() as session:
        row = session.get(Job, job_id)
        assert row is not None
        for attempt in session.query(Attempt).filter_by(job_id=job_id, number=row.attempt):
            attempt.deadline_at = utcnow() - timedelta(seconds=seconds)
            attempt.heartbeat_at = utcnow()


def test_the_limit_is_the_training_budget_or_the_longest_job_plus_a_grace() -> None:
    config = settings(max_job_seconds=7200.0, time_limit_grace_seconds=300.0)
    assert attempt_time_limit({"training": {"max_seconds": 90}}, config) == 390.0
    assert attempt_time_limit({"training": {"max_seconds": None}}, config) == 7500.0
    assert describe_time_limit({"training": {"max_seconds": 90}}, config) == (
        "6 min 30 s (training.max_seconds = 1 min 30 s, plus 5 min for loading data and exports)"
    )
    assert "TAAS_MAX_JOB_SECONDS = 2 h" in describe_time_limit({"training": {}}, config)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "0.5 s"), (3, "3 s"), (60, "1 min"), (3725, "1 h 2 min 5 s"), (86400, "24 h")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_a_claim_sets_the_attempts_deadline_and_tells_the_worker(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit(api, auth, WITH_BUDGET)
    before = utcnow()
    body = claim(api, worker_auth, job_id)

    expected = 90 + get_settings().time_limit_grace_seconds
    assert body["time_limit_seconds"] == expected
    assert body["time_limit"].startswith(format_seconds(expected))
    with session_scope() as session:
        attempt = session.query(Attempt).filter_by(job_id=job_id, number=1).one()
        assert attempt.deadline_at is not None
        left = (attempt.deadline_at - before).total_seconds()
        assert expected - 5 < left < expected + 5
    events = api.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["items"]
    assert "time limit" in events[-1]["message"]


def test_the_broker_message_carries_a_hard_limit_after_the_reconcilers(
    api: TestClient, auth: dict[str, str]
) -> None:
    submit(api, auth, WITH_BUDGET)

    [message] = (get_settings().broker_folder / "queue").iterdir()
    hard, soft = json.loads(message.read_text())["headers"]["timelimit"]
    limit = 90 + get_settings().time_limit_grace_seconds
    # The worker stops at the limit, the reconciler a lease later; Celery's kill comes after both.
    assert hard == limit + 2 * get_settings().lease_seconds
    assert soft is None


def test_an_attempt_past_its_limit_fails_the_job_as_timeout_and_is_not_retried(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit(api, auth, WITH_BUDGET)
    claim(api, worker_auth, job_id)
    overdue(job_id, 61)  # a lease (60 s) past its deadline, heartbeating all along

    done = reconcile(settings(lease_seconds=60))

    assert done.timed_out == [job_id]
    assert done.requeued == []
    final = job(api, auth, job_id)
    assert (final["status"], final["attempt"]) == ("failed", 1)
    assert final["error"]["type"] == "timeout"
    assert final["error"]["message"].startswith(
        "attempt 1 ran past its time limit of 11 min 30 s (training.max_seconds = 1 min 30 s"
    )
    assert "did not stop it" in final["error"]["message"]
    with session_scope() as session:
        assert session.query(Attempt).filter_by(job_id=job_id).one().status == "timed_out"
    # The worker's late writes are refused, and nothing runs the job again.
    late = api.post(
        f"/internal/v1/jobs/{job_id}/attempts/1/finish",
        json={"status": "succeeded"},
        headers=worker_auth,
    )
    assert late.status_code == 409
    again = reconcile(settings(lease_seconds=60))
    assert (again.timed_out, again.requeued, again.re_enqueued) == ([], [], [])


def test_the_worker_has_a_lease_after_the_limit_to_report_the_timeout_itself(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit(api, auth, WITH_BUDGET)
    claim(api, worker_auth, job_id)
    overdue(job_id, 30)

    assert reconcile(settings(lease_seconds=60)).timed_out == []
    assert job(api, auth, job_id)["status"] == "running"
    reported = api.post(
        f"/internal/v1/jobs/{job_id}/attempts/1/finish",
        json={
            "status": "failed",
            "error_type": "timeout",
            "error_message": "stopped at its time limit",
        },
        headers=worker_auth,
    )
    assert reported.status_code == 200, reported.text
    assert job(api, auth, job_id)["error"] == {
        "type": "timeout",
        "message": "stopped at its time limit",
    }


def test_an_attempt_both_overdue_and_silent_times_out_rather_than_retrying(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit(api, auth, WITH_BUDGET)
    claim(api, worker_auth, job_id)
    overdue(job_id, 120)
    with session_scope() as session:
        session.query(Attempt).filter_by(job_id=job_id).one().heartbeat_at = utcnow() - timedelta(
            seconds=120
        )

    done = reconcile(settings(lease_seconds=60))

    assert (done.timed_out, done.requeued) == ([job_id], [])
    assert job(api, auth, job_id)["error"]["type"] == "timeout"


def test_an_overdue_cancelling_job_ends_cancelled(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit(api, auth, WITH_BUDGET)
    claim(api, worker_auth, job_id)
    api.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    overdue(job_id, 61)

    done = reconcile(settings(lease_seconds=60))

    assert done.cancelled == [job_id]
    final = job(api, auth, job_id)
    assert final["status"] == "cancelled"
    assert final["error"]["type"] == "cancelled"
    assert "ran past its time limit" in final["error"]["message"]
