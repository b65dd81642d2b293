"""The worker's task code outside Celery: what it accepts from a broker message."""

from __future__ import annotations

import logging

import pytest

from app.config import Settings
from worker.runner import run_job_by_id


@pytest.mark.parametrize("job_id", ["../../etc/passwd", "job_" + "x" * 24, "", "job_12/../.."])
def test_a_malformed_job_id_is_ignored_before_any_call(
    job_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The API URL points nowhere: a call would fail loudly after retries, so returning at once
    # shows that the id was rejected before any request or file name was built from it.
    settings = Settings(worker_token="t" * 30, api_url="http://127.0.0.1:9")
    with caplog.at_level(logging.ERROR, logger="worker.runner"):
        run_job_by_id(job_id, settings)
    assert "malformed job id" in caplog.text
