"""Log lines: JSON with the request's and job's context, request ids, and no secrets."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taas.app.auth.dependencies import CurrentTenant
from taas.app.cli.serve import WorkerLogEcho
from taas.app.core.config import Settings
from taas.app.observability.logs import JsonFormatter, RedactSecrets, uvicorn_log_config
from taas.app.observability.request_context import bind, job_context
from tests.app.internal.test_router import claimed_job, write
from tests.conftest import WORKER_TOKEN, clear_caches

API_KEY = "taas_0123456789ab_" + "k" * 43
DATABASE_URL = "postgresql+psycopg://taas:hunter2-database-password@db:5432/taas"


def record(
    message: str, *args: Any, name: str = "taas.app.test", **extra: Any
) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def json_line(made: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(made)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


class Lines(logging.Handler):
    """Formats each record as it is emitted (where its context is), like a stream handler."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def app_lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("taas.app")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_a_json_line_has_the_fields_of_the_job_it_is_about() -> None:
    with job_context("job_0123456789abcdef01234567"):
        bind(attempt=2)
        line = json_line(record("epoch %d done", 3))
    assert line["message"] == "epoch 3 done"
    assert line["level"] == "INFO"
    assert line["logger"] == "taas.app.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])
    assert line["job_id"] == "job_0123456789abcdef01234567"
    assert line["attempt"] == 2
    assert "tenant" not in line  # fields that do not apply are left out
    assert "job_id" not in json_line(record("after the job"))


def test_a_traceback_is_one_field_of_one_line() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        made = logging.LogRecord(
            "taas.app", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = json_line(made)
    assert line["exception"].startswith("Traceback")
    assert "ValueError: bad value" in line["exception"]


def redacting() -> RedactSecrets:
    return RedactSecrets(Settings(worker_token=WORKER_TOKEN, database_url=DATABASE_URL))


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        (f"key {API_KEY} refused", API_KEY),
        (
            "signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        (f"headers: {{'authorization': 'Bearer {WORKER_TOKEN}'}}", WORKER_TOKEN),
        (f"token {WORKER_TOKEN} in a message", WORKER_TOKEN),
        (f"could not connect to {DATABASE_URL}", "hunter2-database-password"),
        ("broker redis://:s3cret-broker-pass@redis:6379/0 down", "s3cret-broker-pass"),
    ],
)
def test_secrets_are_redacted_from_messages_and_arguments(message: str, secret: str) -> None:
    as_message = record(message)
    redacting().filter(as_message)
    assert secret not in as_message.getMessage()
    assert "[redacted]" in as_message.getMessage()

    as_argument = record("said: %s", message)
    redacting().filter(as_argument)
    assert secret not in as_argument.getMessage()


def test_redaction_keeps_numbers_and_ordinary_words() -> None:
    # uvicorn's access line: its formatter unpacks these arguments and formats a %d.
    access = record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/v1/jobs", "1.1", 200)
    redacting().filter(access)
    assert access.args == ("127.0.0.1:5000", "GET", "/v1/jobs", "1.1", 200)
    plain = record("taas_http_requests_total and taas serve are not secrets")
    redacting().filter(plain)
    assert plain.getMessage() == "taas_http_requests_total and taas serve are not secrets"


def test_a_secret_in_a_traceback_is_redacted() -> None:
    try:
        raise RuntimeError(f"cannot reach {DATABASE_URL}")
    except RuntimeError:
        made = logging.LogRecord(
            "taas.app", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    redacting().filter(made)
    assert "hunter2" not in json_line(made)["exception"]


@pytest.fixture
def logging_api(api: TestClient) -> TestClient:
    """The API with two routes that log: one as a tenant, one that fails."""
    app: Any = api.app

    @app.get("/test/log")
    def log_as_tenant(tenant: CurrentTenant) -> dict[str, str]:
        logging.getLogger("taas.app.test").info("working for %s", tenant.name)
        return {}

    @app.get("/test/fail")
    def fail() -> None:
        raise RuntimeError("a bug")

    return api


def test_every_answer_has_a_request_id(api: TestClient) -> None:
    generated = api.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert api.get("/healthz").headers["x-request-id"] != generated

    given = api.get("/healthz", headers={"X-Request-ID": "lb-7f3a.2:x_1"})
    assert given.headers["x-request-id"] == "lb-7f3a.2:x_1"
    for invalid in ("a" * 129, "two words", 'quote"d', ""):
        answer = api.get("/healthz", headers={"X-Request-ID": invalid})
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])


def test_a_requests_log_lines_name_its_id_and_tenant(
    logging_api: TestClient, auth: dict[str, str], app_lines: Lines
) -> None:
    answer = logging_api.get("/test/log", headers={**auth, "X-Request-ID": "req-1"})
    assert answer.status_code == 200
    (line,) = [line for line in app_lines.lines if line["logger"] == "taas.app.test"]
    assert line == {**line, "message": "working for acme", "request_id": "req-1", "tenant": "acme"}


def test_an_unexpected_error_keeps_its_request_id(
    logging_api: TestClient, app_lines: Lines
) -> None:
    answer = logging_api.get("/test/fail", headers={"X-Request-ID": "req-500"})
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "req-500"
    (line,) = [line for line in app_lines.lines if line["message"] == "unhandled error"]
    assert line["request_id"] == "req-500"
    assert "RuntimeError: a bug" in line["exception"]


def test_a_workers_call_names_the_job_and_attempt(
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    app_lines: Lines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = claimed_job(api, auth, worker_auth)
    said: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "taas.app.internal.service.record_event",
        lambda *args, **kwargs: said.append(json_line(record("event"))),
    )
    assert write(api, worker_auth, job_id, "events", {"message": "hello"}).status_code == 200
    assert said[0]["job_id"] == job_id
    assert said[0]["attempt"] == 1


def test_uvicorn_logs_json_lines_without_secrets() -> None:
    settings = Settings(log_format="json", worker_token=WORKER_TOKEN)
    config = uvicorn_log_config(settings)
    assert {spec["()"] for spec in config["formatters"].values()} == {JsonFormatter}
    assert all(handler["filters"] == ["redact"] for handler in config["handlers"].values())
    assert config["root"]["level"] == "INFO"
    text = uvicorn_log_config(Settings())
    assert JsonFormatter not in [spec.get("()") for spec in text["formatters"].values()]


def test_celery_handlers_write_json_lines_without_secrets(
    taas_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import celery.apps.worker

    from taas.worker.celery_app import _shape_worker_logs

    monkeypatch.setenv("TAAS_LOG_FORMAT", "json")
    clear_caches()
    # JSON mode replaces how Celery prints its shutdown notices: put it back afterwards.
    monkeypatch.setattr(celery.apps.worker, "safe_say", celery.apps.worker.safe_say)
    stream = io.StringIO()
    logger = logging.getLogger("test.celery")
    logger.addHandler(logging.StreamHandler(stream))
    logger.propagate = False
    try:
        _shape_worker_logs(logger)
        logger.warning("Task taas.run_job[%s] got token %s", "abc", WORKER_TOKEN)
    finally:
        logger.handlers.clear()
    line = json.loads(stream.getvalue())
    assert line["level"] == "WARNING"
    assert WORKER_TOKEN not in line["message"]


def test_taas_serve_echoes_warnings_from_json_worker_lines(tmp_path: Path) -> None:
    echo = WorkerLogEcho(tmp_path / "worker.log")

    def line(**fields: str) -> str:
        return json.dumps({"time": "t", "logger": "worker", **fields})

    assert echo.shown(line(level="INFO", message="Task succeeded")) is None
    assert echo.shown(line(level="WARNING", message="job 1 slow")) == "worker: WARNING job 1 slow"
    failed = echo.shown(line(level="ERROR", message="boom", exception="Traceback ...\nKeyError"))
    assert failed == "worker: ERROR boom\nTraceback ...\nKeyError"
