"""Fair dispatch against a real database and the embedded broker: jobs wait in the database
until a live worker has a free slot, then the fairest one is sent (fewest running per tenant,
priority, the tenant served longest ago, first come first served)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taas.app.auth.models import Tenant
from taas.app.core.config import get_settings
from taas.app.core.db import session_scope, utcnow
from taas.app.jobs.models import Job
from taas.app.scheduling.models import WorkerPresence
from taas.app.scheduling.reconciler import reconcile
from tests.app.internal.test_router import finish
from tests.conftest import TINY_SYNTHETIC, clear_caches

INTERNAL = "/internal/v1"


def submit(api: TestClient, auth: dict[str, str], name: str, priority: int = 0) -> str:
    body = {**TINY_SYNTHETIC, "name": name, "priority": priority}
    response = api.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def sent() -> list[str]:
    """The jobs sent to the broker and not claimed: those holding a worker slot, oldest first."""
    with session_scope() as session:
        rows = session.query(Job).filter(Job.status == "queued", Job.enqueued_at.is_not(None))
        return [job.name for job in sorted(rows, key=lambda job: job.enqueued_at)]


def messages() -> int:
    """Messages in the embedded (filesystem) broker's queue folder."""
    folder = get_settings().broker_folder / "queue"
    return len(list(folder.iterdir())) if folder.exists() else 0


def run_to_end(api: TestClient, worker_auth: dict[str, str], name: str) -> None:
    """A worker claims the job sent under this name, then it fails quickly (its slot frees)."""
    with session_scope() as session:
        job = session.query(Job).filter(Job.name == name).one()
        job_id = job.id
    claimed = api.post(f"{INTERNAL}/jobs/{job_id}/claim", json={"worker": "w"}, headers=worker_auth)
    assert claimed.status_code == 200, claimed.text
    ended = finish(api, worker_auth, job_id, status="failed", error_type="infra")
    assert ended.status_code == 200, ended.text


@pytest.fixture
def worker(api: TestClient, worker_auth: dict[str, str]) -> Callable[..., None]:
    """Says a worker is alive, with the slots and queues given; none until called."""

    def say_alive(slots: int, queues: tuple[str, ...] = ("cpu", "gpu")) -> None:
        body = {"queues": list(queues), "slots": slots}
        response = api.put(f"{INTERNAL}/workers/test-worker", json=body, headers=worker_auth)
        assert response.status_code == 200, response.text

    return say_alive


@pytest.fixture
def tenants(make_key: Callable[[str], str]) -> dict[str, dict[str, str]]:
    return {name: {"Authorization": f"Bearer {make_key(name)}"} for name in ("a", "b")}


def test_without_a_live_worker_jobs_wait_in_the_database_and_say_so(
    api: TestClient, auth: dict[str, str], worker: Any
) -> None:
    job_id = submit(api, auth, "first")
    assert (sent(), messages()) == ([], 0)
    job = api.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert job["status"] == "queued"
    assert job["waiting_for"] == (
        "a worker on the cpu queue: none is running now; it starts when one is"
    )
    worker(slots=1)
    assert api.get(f"/v1/jobs/{job_id}", headers=auth).json()["waiting_for"] == (
        "a worker on the cpu queue to take it (it was sent to a free slot)"
    )
    second = submit(api, auth, "second")
    assert (
        api.get(f"/v1/jobs/{second}", headers=auth)
        .json()["waiting_for"]
        .startswith("a free slot on the cpu queue (1 in all")
    )


def test_one_job_per_free_slot_reaches_the_broker(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str], worker: Any
) -> None:
    worker(slots=1)
    for name in ("one", "two", "three"):
        submit(api, auth, name)
    assert (sent(), messages()) == (["one"], 1)

    run_to_end(api, worker_auth, "one")
    assert sent() == ["two"]
    worker(slots=3)  # the worker says it has more slots: they fill at once
    assert sent() == ["two", "three"]


def test_a_tenant_behind_anothers_burst_runs_next(
    api: TestClient,
    tenants: dict[str, dict[str, str]],
    worker_auth: dict[str, str],
    worker: Any,
) -> None:
    worker(slots=1)
    for number in range(1, 6):
        submit(api, tenants["a"], f"a{number}")
    submit(api, tenants["b"], "b1")  # behind a's burst, while a1 holds the only slot
    assert sent() == ["a1"]
    run_to_end(api, worker_auth, "a1")
    assert sent() == ["b1"]  # both tenants have none running: b was never served
    run_to_end(api, worker_auth, "b1")
    assert sent() == ["a2"]


def test_fewest_running_goes_first_then_priority_within_a_tenant(
    api: TestClient,
    tenants: dict[str, dict[str, str]],
    worker_auth: dict[str, str],
    worker: Any,
) -> None:
    submit(api, tenants["a"], "a-low", priority=-5)
    submit(api, tenants["a"], "a-high", priority=5)
    submit(api, tenants["a"], "a-mid")
    submit(api, tenants["b"], "b-low", priority=-10)
    worker(slots=2)  # one for each tenant, a's highest priority first
    assert sorted(sent()) == ["a-high", "b-low"]
    run_to_end(api, worker_auth, "b-low")
    worker(slots=2)
    assert "a-mid" in sent()  # b has nothing waiting: a's next by priority


def test_a_tenants_running_cap_leaves_slots_to_others(
    api: TestClient,
    tenants: dict[str, dict[str, str]],
    worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAAS_MAX_RUNNING_PER_TENANT", "1")
    get_settings.cache_clear()
    worker(slots=3)
    for name in ("a1", "a2"):
        submit(api, tenants["a"], name)
    assert sent() == ["a1"]  # a second slot is free, but a may run one at a time
    with session_scope() as session:
        tenant = session.query(Tenant).filter(Tenant.name == "b").one()
        tenant.max_running = 2  # b's own cap overrides the setting
    for name in ("b1", "b2", "b3"):
        submit(api, tenants["b"], name)
    assert sent() == ["a1", "b1", "b2"]
    clear_caches()


def test_a_worker_not_heard_from_gets_no_jobs(
    api: TestClient, auth: dict[str, str], worker: Any
) -> None:
    worker(slots=1)
    with session_scope() as session:
        for row in session.query(WorkerPresence):
            periods = get_settings().presence_seconds * 3
            row.seen_at = utcnow() - timedelta(seconds=periods + 1)
    submit(api, auth, "waits")
    assert sent() == []
    worker(slots=1)  # heard from again
    assert sent() == ["waits"]


def test_a_stopping_worker_takes_its_slots_away(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str], worker: Any
) -> None:
    worker(slots=2)
    gone = api.delete(f"{INTERNAL}/workers/test-worker", headers=worker_auth)
    assert gone.status_code == 204
    submit(api, auth, "waits")
    assert sent() == []


def test_jobs_go_to_the_queue_their_device_names(
    api: TestClient, auth: dict[str, str], worker: Any
) -> None:
    worker(slots=1, queues=("gpu",))
    response = api.post("/v1/jobs", json={**TINY_SYNTHETIC, "name": "on-cpu"}, headers=auth)
    assert response.status_code == 201
    assert sent() == []  # a cpu job waits for a worker on the cpu queue
    worker(slots=1, queues=("cpu", "gpu"))
    assert sent() == ["on-cpu"]


def test_the_reconciler_dispatches_what_an_event_missed(
    api: TestClient, auth: dict[str, str], worker: Any
) -> None:
    worker(slots=1)
    job_id = submit(api, auth, "missed")
    with session_scope() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.enqueued_at = None  # as if the dispatch after its submit never ran
    assert reconcile(get_settings()).dispatched == [job_id]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"queues": ["cpu"], "slots": 0}, "greater than or equal to 1"),
        ({"queues": ["tpu"], "slots": 1}, "'cpu' or 'gpu'"),
        ({"queues": [], "slots": 1}, "at least 1 item"),
    ],
)
def test_presence_with_bad_fields_is_refused(
    api: TestClient, worker_auth: dict[str, str], body: dict[str, Any], problem: str
) -> None:
    response = api.put(f"{INTERNAL}/workers/w1", json=body, headers=worker_auth)
    assert response.status_code == 422
    assert problem in response.text


def test_presence_needs_the_worker_token(api: TestClient, auth: dict[str, str]) -> None:
    body = {"queues": ["cpu"], "slots": 1}
    assert api.put(f"{INTERNAL}/workers/w1", json=body).status_code == 401
    assert api.put(f"{INTERNAL}/workers/w1", json=body, headers=auth).status_code == 401
