"""GET /metrics: read back with prometheus-client's own parser, before and after things happen."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from taas.app.core.db import session_scope
from taas.app.observability.metrics import after_commit
from taas.app.observability.metrics_dir import MULTIPROCESS_ENV, metrics_shared_by_processes
from taas.app.scheduling.reconciler import reconcile
from tests.app.internal.test_router import claimed_job, finish, upload_model, write
from tests.app.scheduling.test_reconciler import settings, silence
from tests.conftest import clear_caches

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: TestClient, **headers: str) -> Samples:
    response = api.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_job_moves_the_counters_from_submit_to_success(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    before = scrape(api)

    job_id = claimed_job(api, auth, worker_auth)
    epoch = {"epoch": 1, "train_loss": 0.5, "samples_per_second": 2500.0, "epoch_seconds": 0.4}
    assert write(api, worker_auth, job_id, "metrics", epoch).status_code == 200
    upload_model(api, worker_auth, job_id)
    assert finish(api, worker_auth, job_id, status="succeeded").status_code == 200
    assert api.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200

    after = scrape(api)
    requests = "taas_http_requests_total"
    assert moved(before, after, requests, method="POST", route="/v1/jobs", status="201") == 1
    # The route's template, never the raw path with the job's id in it.
    assert (
        moved(before, after, requests, method="GET", route="/v1/jobs/{job_id}", status="200") == 1
    )
    assert not any(job_id in dict(labels).get("route", "") for _, labels in after)
    claim_route = "/internal/v1/jobs/{job_id}/claim"
    duration = "taas_http_request_duration_seconds_count"
    assert moved(before, after, duration, method="POST", route=claim_route, status="200") == 1
    assert moved(before, after, "taas_job_queue_wait_seconds_count", queue="cpu") == 1
    assert moved(before, after, "taas_job_run_seconds_count", queue="cpu", status="succeeded") == 1
    assert moved(before, after, "taas_worker_samples_per_second_sum", queue="cpu") == 2500.0
    assert moved(before, after, "taas_worker_epoch_seconds_count", queue="cpu") == 1
    # Counted in the database at scrape time: this test's database holds this one job.
    assert value(after, "taas_jobs", status="succeeded", queue="cpu") == 1
    assert value(after, "taas_jobs", status="queued", queue="cpu") == 0
    assert value(after, "taas_database_up") == 1


def test_a_failed_job_is_counted_by_its_error_type(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    before = scrape(api)
    job_id = claimed_job(api, auth, worker_auth)
    body = {"status": "failed", "error_type": "user_error", "error_message": "labels out of range"}
    assert finish(api, worker_auth, job_id, **body).status_code == 200

    after = scrape(api)
    failed = "taas_jobs_failed_total"
    assert moved(before, after, failed, queue="cpu", error_type="user_error") == 1
    assert moved(before, after, "taas_job_run_seconds_count", queue="cpu", status="failed") == 1


def test_the_reconciler_counts_its_passes_expired_leases_and_retries(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    live_worker: Callable[..., None],
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    silence(job_id, 120)
    before = scrape(api)

    done = reconcile(settings(lease_seconds=60))

    after = scrape(api)
    assert done.requeued == [job_id]
    assert moved(before, after, "taas_reconciler_passes_total", outcome="ok") == 1
    actions = "taas_reconciler_actions_total"
    assert moved(before, after, actions, action="requeued") == 1
    assert moved(before, after, actions, action="dispatched") == len(done.dispatched)
    assert (actions, frozenset({("action", "timed_out")})) in after  # zero, but there
    assert moved(before, after, "taas_leases_expired_total", queue="cpu") == 1
    assert moved(before, after, "taas_attempts_retried_total", queue="cpu") == 1


def test_a_path_no_route_matches_is_one_label(api: TestClient) -> None:
    before = scrape(api)
    assert api.get("/no/such/page/12345").status_code == 404
    assert api.get("/another/unknown").status_code == 404

    after = scrape(api)
    requests = "taas_http_requests_total"
    assert moved(before, after, requests, method="GET", route="unmatched", status="404") == 2
    assert not any("12345" in dict(labels).get("route", "") for _, labels in after)


def test_an_unknown_method_is_one_label(api: TestClient) -> None:
    before = scrape(api)
    api.request("BREW", "/healthz")
    after = scrape(api)
    assert (
        moved(
            before,
            after,
            "taas_http_requests_total",
            method="other",
            route="/healthz",
            status="405",
        )
        == 1
    )


def test_the_metrics_token_guards_the_scrape_when_set(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.get("/metrics").status_code == 200  # unset: open, like an internal port

    monkeypatch.setenv("TAAS_METRICS_TOKEN", "scrape-token-0123456789")
    clear_caches()
    assert api.get("/metrics").status_code == 401
    wrong = api.get("/metrics", headers={"Authorization": "Bearer scrape-token-9876543210"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    scrape(api, Authorization="Bearer scrape-token-0123456789")


def test_metrics_are_neither_in_the_schema_nor_rate_limited(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "/metrics" not in api.get("/openapi.json").json()["paths"]
    monkeypatch.setenv("TAAS_RATE_LIMIT", "1/minute")
    clear_caches()
    for _ in range(3):
        response = api.get("/metrics")
        assert response.status_code == 200
        assert "ratelimit-limit" not in response.headers


def test_a_rolled_back_change_counts_nothing(taas_home: Path) -> None:
    counted: list[str] = []

    def fail_after_noting() -> None:
        with session_scope() as session:
            after_commit(session, lambda: counted.append("rolled back"))
            raise RuntimeError("the request failed")

    with session_scope() as session:
        after_commit(session, lambda: counted.append("committed"))
    with pytest.raises(RuntimeError):
        fail_after_noting()
    assert counted == ["committed"]


def test_several_processes_get_a_fresh_folder_removed_afterwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    with metrics_shared_by_processes(workers=1) as folder:
        assert folder is None  # one process: its own registry holds everything
    with metrics_shared_by_processes(workers=2) as folder:
        assert folder is not None
        assert os.environ[MULTIPROCESS_ENV] == str(folder)
        assert list(folder.iterdir()) == []
    assert not folder.exists()
    assert MULTIPROCESS_ENV not in os.environ


def test_an_operators_folder_is_emptied_of_an_earlier_runs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "counter_4242.db"
    stale.write_bytes(b"counts of a run that ended")
    keep = tmp_path / "README"
    keep.write_text("not ours")
    monkeypatch.setenv(MULTIPROCESS_ENV, str(tmp_path))

    with metrics_shared_by_processes(workers=2) as folder:
        assert folder == tmp_path
        assert not stale.exists()
    assert keep.exists()
