"""The reconciler against a real database and broker: lost attempts are re-queued or failed,
unclaimed jobs are sent again with a growing delay, and a lost attempt's writes are refused."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from taas.app.core.config import Settings, get_settings
from taas.app.core.db import session_scope, utcnow
from taas.app.jobs.models import Attempt, Job
from taas.app.scheduling.reconciler import Reconciler, reconcile
from tests.app.core.test_storage_space import full_database
from tests.app.internal.test_router import finish, stored_files, upload, upload_model
from tests.conftest import TINY_SYNTHETIC, clear_caches, redis_database_url

__all__ = ["full_database"]  # the fixture


@pytest.fixture(autouse=True)
def _workers_are_alive(live_worker: Callable[..., None]) -> None:
    """Jobs go to the broker only for free slots of live workers (app/scheduling)."""


def settings(**overrides: object) -> Settings:
    return get_settings().model_copy(update=overrides)


def submit_and_claim(api: TestClient, auth: dict[str, str], worker: dict[str, str]) -> str:
    job_id = str(api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"])
    claim(api, worker, job_id)
    return job_id


def claim(api: TestClient, worker: dict[str, str], job_id: str) -> int:
    response = api.post(f"/internal/v1/jobs/{job_id}/claim", json={"worker": "w"}, headers=worker)
    assert response.status_code == 200, response.text
    return int(response.json()["attempt"])


def silence(job_id: str, seconds: float) -> None:
    """Pretend the live attempt's worker stopped heartbeating ``seconds`` ago."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        for attempt in session.query(Attempt).filter_by(job_id=job_id, number=job.attempt):
            attempt.heartbeat_at = utcnow() - timedelta(seconds=seconds)


def job(api: TestClient, auth: dict[str, str], job_id: str) -> dict[str, object]:
    body: dict[str, object] = api.get(f"/v1/jobs/{job_id}", headers=auth).json()
    return body


def messages(api: TestClient, auth: dict[str, str], job_id: str) -> list[str]:
    events = api.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["items"]
    return [str(event["message"]) for event in events]


def test_a_lost_attempt_is_requeued_and_its_writes_are_refused(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit_and_claim(api, auth, worker_auth)
    silence(job_id, 120)

    done = reconcile(settings(lease_seconds=60))

    assert done.requeued == [job_id]
    assert job(api, auth, job_id)["status"] == "queued"
    assert any("no heartbeat for 120 s" in message for message in messages(api, auth, job_id))
    assert claim(api, worker_auth, job_id) == 2
    stale = api.post(
        f"/internal/v1/jobs/{job_id}/attempts/1/metrics",
        json={"epoch": 1, "train_loss": 1.0},
        headers=worker_auth,
    )
    assert stale.status_code == 409
    finish = api.post(
        f"/internal/v1/jobs/{job_id}/attempts/1/finish",
        json={"status": "failed"},
        headers=worker_auth,
    )
    assert finish.status_code == 409
    assert job(api, auth, job_id)["status"] == "running"


def test_a_live_attempt_is_left_alone(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit_and_claim(api, auth, worker_auth)
    silence(job_id, 10)

    done = reconcile(settings(lease_seconds=60))

    assert done.requeued == []
    assert job(api, auth, job_id)["status"] == "running"


def test_the_last_attempt_lost_fails_the_job_with_every_reason(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit_and_claim(api, auth, worker_auth)
    silence(job_id, 120)
    reconcile(settings(max_attempts=2))
    claim(api, worker_auth, job_id)
    silence(job_id, 120)

    done = reconcile(settings(max_attempts=2))

    assert done.failed == [job_id]
    final = job(api, auth, job_id)
    assert final["status"] == "failed"
    assert final["attempt"] == 2
    assert final["error"] == {
        "type": "infra",
        "message": final["error"]["message"],  # type: ignore[index]
    }
    assert "last of 2 attempts" in str(final["error"])
    lost = [message for message in messages(api, auth, job_id) if "lost its worker" in message]
    assert len(lost) == 2
    # Terminal: nothing claims it again, however often the reconciler runs.
    assert reconcile(settings(max_attempts=2)).re_enqueued == []
    refused = api.post(
        f"/internal/v1/jobs/{job_id}/claim", json={"worker": "w"}, headers=worker_auth
    )
    assert refused.status_code == 409


def test_a_lost_attempt_of_a_cancelling_job_ends_cancelled(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit_and_claim(api, auth, worker_auth)
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=auth).json()["status"] == "cancelling"
    silence(job_id, 120)

    assert reconcile(settings()).cancelled == [job_id]
    final = job(api, auth, job_id)
    assert final["status"] == "cancelled"
    error = final["error"]
    assert isinstance(error, dict)
    assert error["type"] == "cancelled"
    assert error["message"].startswith("cancelled by the user; attempt 1 lost its worker")


def waiting_messages() -> list[Path]:
    """The messages in the embedded (filesystem) broker's queue folder."""
    return sorted((get_settings().broker_folder / "queue").iterdir())


def lose_messages() -> None:
    """What a broker restart without persistence does: every waiting message is gone."""
    for message in waiting_messages():
        message.unlink()


def sent_ago(job_id: str, seconds: float) -> None:
    with session_scope() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.enqueued_at = utcnow() - timedelta(seconds=seconds)


def test_unclaimed_jobs_are_sent_again_with_a_growing_delay(
    api: TestClient, auth: dict[str, str]
) -> None:
    job_id = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"]
    lose_messages()
    assert reconcile(settings(requeue_after_seconds=60)).re_enqueued == []  # just sent

    sent_ago(job_id, 61)
    assert reconcile(settings(requeue_after_seconds=60)).re_enqueued == [job_id]
    assert len(waiting_messages()) == 1
    # Sent once more: the next try waits twice as long.
    lose_messages()
    with session_scope() as session:
        row = session.get(Job, job_id)
        assert row is not None
        assert row.enqueue_count == 1
    sent_ago(job_id, 61)
    assert reconcile(settings(requeue_after_seconds=60)).re_enqueued == []
    sent_ago(job_id, 121)
    assert reconcile(settings(requeue_after_seconds=60)).re_enqueued == [job_id]


def test_jobs_waiting_behind_their_own_messages_are_not_sent_again(
    api: TestClient, auth: dict[str, str]
) -> None:
    jobs = [api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"] for _ in "ab"]
    for job_id in jobs:
        sent_ago(job_id, 600)  # long due: a busy worker has not reached them yet

    assert reconcile(settings(requeue_after_seconds=60)).re_enqueued == []
    assert len(waiting_messages()) == 2  # no copies

    waiting_messages()[0].unlink()  # one message lost: fewer messages than queued jobs
    assert sorted(reconcile(settings(requeue_after_seconds=60)).re_enqueued) == sorted(jobs)


def test_a_released_job_is_queued_again(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit_and_claim(api, auth, worker_auth)

    response = api.post(
        f"/internal/v1/jobs/{job_id}/attempts/1/release",
        json={"reason": "the worker is shutting down"},
        headers=worker_auth,
    )

    assert response.status_code == 200
    assert job(api, auth, job_id)["status"] == "queued"
    assert any("gave the job back" in message for message in messages(api, auth, job_id))
    again = api.post(f"/internal/v1/jobs/{job_id}/attempts/1/release", json={}, headers=worker_auth)
    assert again.status_code == 409
    assert claim(api, worker_auth, job_id) == 2


def test_leases_are_not_expired_before_workers_could_reach_a_new_api(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit_and_claim(api, auth, worker_auth)
    silence(job_id, 120)

    done = reconcile(settings(), expire_leases=False)

    assert done.requeued == []
    assert job(api, auth, job_id)["status"] == "running"


def test_a_send_that_fails_does_not_count(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"]
    with session_scope() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.enqueued_at = None
    for sender in (
        "taas.app.scheduling.reconciler.enqueue_job",
        "taas.app.scheduling.dispatch.enqueue_job",
    ):
        monkeypatch.setattr(sender, lambda job_id, queue, time_limit: False)  # broker down

    done = reconcile(settings())
    assert (done.re_enqueued, done.dispatched) == ([], [])

    with session_scope() as session:
        row = session.get(Job, job_id)
        assert row is not None
        assert (row.enqueue_count, row.enqueued_at) == (0, None)  # due again next pass


def test_a_cancelling_job_given_back_ends_cancelled(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit_and_claim(api, auth, worker_auth)
    api.post(f"/v1/jobs/{job_id}/cancel", headers=auth)

    response = api.post(
        f"/internal/v1/jobs/{job_id}/attempts/1/release",
        json={"reason": "the worker is shutting down"},
        headers=worker_auth,
    )

    assert response.status_code == 200
    final = job(api, auth, job_id)
    assert final["status"] == "cancelled"
    assert final["error"] == {
        "type": "cancelled",
        "message": "cancelled by the user; its worker stopped early (the worker is shutting down)",
    }


def test_a_finish_lost_to_a_full_disk_is_recorded_once_space_returns(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    full_database: Callable[[bool], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id = submit_and_claim(api, auth, worker_auth)
    full_database(True)
    outcome = {"status": "failed", "error_type": "user_error", "error_message": "bad data"}
    response = api.post(
        f"/internal/v1/jobs/{job_id}/attempts/1/finish", json=outcome, headers=worker_auth
    )
    assert response.status_code == 507
    silence_while_full = settings(lease_seconds=0.01, reconcile_seconds=0.05, max_attempts=1)

    # Every pass fails while the disk is full: the loop says so in one line each, and lives on.
    reconciler = Reconciler(silence_while_full)
    with caplog.at_level(logging.ERROR, logger="taas.app.scheduling.reconciler"):
        reconciler.start()
        time.sleep(0.5)
        assert reconciler.thread.is_alive()
        reconciler.stop()
    failures = [record for record in caplog.records if "reconcile pass failed" in record.message]
    assert 1 <= len(failures) <= 12  # one per period: no spinning
    assert all(record.exc_info is None for record in failures)
    assert "storage full: the database or its disk is full" in failures[0].message
    assert job(api, auth, job_id)["status"] == "running"

    full_database(False)
    done = reconcile(silence_while_full)
    assert done.failed == [job_id]
    error = job(api, auth, job_id)["error"]
    assert isinstance(error, dict)
    assert error["type"] == "infra"
    assert "storage full: the database or its disk is full when it last tried to report" in str(
        error["message"]
    )


def test_artifacts_of_jobs_that_ended_long_ago_are_deleted_after_their_retention(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit_and_claim(api, auth, worker_auth)
    checkpoint = upload(
        api, worker_auth, job_id, "checkpoint-epoch1.pt", b"c" * 100, kind="checkpoint"
    )
    assert checkpoint.status_code == 200
    upload_model(api, worker_auth, job_id)
    assert finish(api, worker_auth, job_id, status="succeeded").status_code == 200
    recent = reconcile(settings(checkpoint_retention_days=7, artifact_retention_days=30))
    assert recent.expired == []  # it ended just now

    with session_scope() as session:
        ended = session.get(Job, job_id)
        assert ended is not None
        ended.finished_at = utcnow() - timedelta(days=10)
    done = reconcile(settings(checkpoint_retention_days=7, artifact_retention_days=30))

    assert len(done.expired) == 1
    listed = api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"]
    assert [item["name"] for item in listed] == ["model.json", "model.safetensors"]
    assert job(api, auth, job_id)["artifacts"] == ["model.json", "model.safetensors"]
    gone = api.get(f"/v1/jobs/{job_id}/artifacts/checkpoint-epoch1.pt", headers=auth)
    assert gone.status_code == 404
    assert "checkpoint-epoch1.pt" in gone.json()["detail"]
    assert len(stored_files(job_id)) == 2  # the checkpoint's file went with its row
    assert messages(api, auth, job_id)[-1] == (
        "deleted checkpoint-epoch1.pt: the job ended more than 7 days ago "
        "(TAAS_CHECKPOINT_RETENTION_DAYS)"
    )

    reconcile(settings(artifact_retention_days=9))
    assert api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"] == []
    assert stored_files(job_id) == []
    assert (
        api.get(f"/v1/jobs/{job_id}/artifacts/model.safetensors", headers=auth).status_code == 404
    )


@pytest.fixture
def redis_broker(taas_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The app's broker is a Redis database of its own, emptied first."""
    url = redis_database_url()
    client = redis.Redis.from_url(url)
    monkeypatch.setenv("TAAS_BROKER_URL", url)
    clear_caches()
    yield client
    client.flushdb()
    client.close()


def test_jobs_whose_messages_a_restarted_redis_lost_are_sent_again_at_once(
    redis_broker: redis.Redis, api: TestClient, auth: dict[str, str]
) -> None:
    jobs = [api.post("/v1/jobs", json=TINY_SYNTHETIC, headers=auth).json()["id"] for _ in "ab"]
    reconcile(settings(requeue_after_seconds=600))  # a first pass marks the broker
    redis_broker.flushdb()  # what a restart without persistence does
    assert redis_broker.llen("cpu") == 0

    # Just sent, so the growing delay alone would wait 10 minutes and more.
    done = reconcile(settings(requeue_after_seconds=600))
    assert sorted(done.dispatched) == sorted(jobs)  # waiting again, so dispatched at once
    assert redis_broker.llen("cpu") == 2
    again = reconcile(settings(requeue_after_seconds=600))
    assert again.re_enqueued == again.dispatched == []  # once per restart
