"""Rate limits per API key: 429 with Retry-After and the RateLimit fields, one count for all
API processes on Redis, nothing counted for the workers, the dashboard and the docs."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from taas.app.core.config import Settings
from tests.conftest import clear_caches, redis_database_url


def new_api() -> TestClient:
    # Not entered: no lifespan, so no reconciler talking to the broker; the routes work alone.
    from taas.app.main import create_app

    return TestClient(create_app(), raise_server_exceptions=False)


@pytest.fixture
def limited(taas_home: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def limit(rule: str, broker_url: str | None = None) -> None:
        monkeypatch.setenv("TAAS_RATE_LIMIT", rule)
        if broker_url is not None:
            monkeypatch.setenv("TAAS_BROKER_URL", broker_url)
        clear_caches()

    return limit


@pytest.fixture
def key(make_key: Callable[[str], str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('acme')}"}


def test_over_the_limit_is_429_with_retry_after_and_the_ratelimit_fields(
    limited: Callable[..., None], key: dict[str, str]
) -> None:
    limited("3/minute;100/hour")
    api = new_api()

    answers = [api.get("/v1/jobs", headers=key) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    first, refused = answers[0], answers[3]
    policy = '"per_minute";q=3;w=60, "per_hour";q=100;w=3600'
    assert first.headers["RateLimit-Policy"] == policy
    assert re.fullmatch(
        r'"per_minute";r=2;t=(59|60), "per_hour";r=99;t=(3599|3600)', first.headers["RateLimit"]
    )
    assert refused.headers["RateLimit-Policy"] == policy
    assert re.fullmatch(
        r'"per_minute";r=0;t=(59|60), "per_hour";r=97;t=\d+', refused.headers["RateLimit"]
    )
    assert 58 <= int(refused.headers["Retry-After"]) <= 60
    detail = refused.json()["detail"]
    assert re.fullmatch(
        r"API key key_[0-9a-f]{12} is over its rate limit \(3 requests per 60 s\); retry in \d+ s",
        detail,
    )


def test_each_key_has_its_own_count(
    limited: Callable[..., None], make_key: Callable[[str], str]
) -> None:
    limited("1/minute")
    api = new_api()
    first, second = ({"Authorization": f"Bearer {make_key(name)}"} for name in ("a", "b"))

    assert api.get("/v1/jobs", headers=first).status_code == 200
    assert api.get("/v1/jobs", headers=first).status_code == 429
    assert api.get("/v1/jobs", headers=second).status_code == 200


def test_routes_without_a_key_are_not_limited(
    limited: Callable[..., None], key: dict[str, str], worker_auth: dict[str, str]
) -> None:
    limited("1/minute")
    api = new_api()
    assert api.get("/v1/jobs", headers=key).status_code == 200
    assert api.get("/v1/jobs", headers=key).status_code == 429

    for path, headers in [
        ("/internal/v1/jobs/job_missing/attempts/1/dataset", worker_auth),
        ("/", {}),
        ("/docs", {}),
        ("/openapi.json", {}),
        ("/healthz", {}),
    ]:
        for _ in range(3):
            answer = api.get(path, headers=headers)
            assert answer.status_code != 429, path
            assert "RateLimit" not in answer.headers, path
    beat = {"epoch": 0, "fraction": 0.1, "batches_done": 1, "batches_per_epoch": 10}
    for _ in range(3):
        answer = api.post(
            "/internal/v1/jobs/job_x/attempts/1/heartbeat", json=beat, headers=worker_auth
        )
        assert answer.status_code == 404  # no such job; never 429


def test_off_turns_limits_off(limited: Callable[..., None], key: dict[str, str]) -> None:
    limited("off")
    api = new_api()

    answers = [api.get("/v1/jobs", headers=key) for _ in range(30)]

    assert {answer.status_code for answer in answers} == {200}
    assert "RateLimit" not in answers[-1].headers


def test_a_rate_limit_setting_that_does_not_parse_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="TAAS_RATE_LIMIT 'lots' is not a rate limit"):
        Settings(rate_limit="lots")
    assert Settings().rate_limit == "20/second;600/minute"


@pytest.fixture
def two_apis_on_redis(limited: Callable[..., None]) -> Iterator[tuple[TestClient, TestClient]]:
    limited("4/minute", broker_url=redis_database_url())
    yield new_api(), new_api()
    clear_caches()


@pytest.mark.redis
def test_two_api_processes_on_redis_share_one_count(
    two_apis_on_redis: tuple[TestClient, TestClient], key: dict[str, str]
) -> None:
    first, second = two_apis_on_redis

    statuses = [api.get("/v1/jobs", headers=key).status_code for api in [first, second] * 3]

    assert statuses == [200, 200, 200, 200, 429, 429]
    assert second.get("/v1/jobs", headers=key).headers["RateLimit"].startswith('"per_minute";r=0;')


def test_an_unreachable_redis_lets_requests_through_with_a_warning(
    limited: Callable[..., None], key: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    limited("1/minute", broker_url="redis://:hunter2@127.0.0.1:1/0")  # nothing listens on port 1
    api = new_api()

    answers = [api.get("/v1/jobs", headers=key) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # then quiet for a while: one line, not one per request
    assert warnings[0].startswith("rate limits are not enforced: Redis at 127.0.0.1:1 failed")
    assert "hunter2" not in caplog.text
