"""The worker's task code outside Celery: what it accepts from a broker message."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from celery.exceptions import Reject

from taas.app.core.config import Settings
from taas.worker.context import SHUTTING_DOWN, JobContext
from taas.worker.reporter import ApiReporter
from taas.worker.runner import WEDGED_EXIT_CODE, Watchdog, run_job_by_id
from taas.worker.tasks import run_job
from taas.worker.training import PREEMPTED, train_and_upload
from tests.worker.trainer.fakes import tiny_spec


@pytest.mark.parametrize("job_id", ["../../etc/passwd", "job_" + "x" * 24, "", "job_12/../.."])
def test_a_malformed_job_id_is_ignored_before_any_call(
    job_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The API URL points nowhere: a call would fail loudly after retries, so returning at once
    # shows that the id was rejected before any request or file name was built from it.
    settings = Settings(worker_token="t" * 30, api_url="http://127.0.0.1:9")
    with caplog.at_level(logging.ERROR, logger="taas.worker.runner"):
        run_job_by_id(job_id, settings)
    assert "malformed job id" in caplog.text


def idle_context(tmp_path: Path) -> JobContext:
    """A context whose reporter points nowhere: the watchdog itself makes no call."""
    reporter = ApiReporter("http://127.0.0.1:9", "t" * 30, attempts=1)
    return JobContext(reporter, "job_" + "a" * 24, 1, 5, tmp_path)


def test_the_watchdog_stops_training_at_the_limit_then_exits_a_wedged_process(
    tmp_path: Path,
) -> None:
    context = idle_context(tmp_path)
    exits: list[int] = []
    with Watchdog(context, 0.05, exit_after=0.2, exit_process=exits.append):
        assert context.timed_out.wait(5)
        assert context.should_stop()
        assert exits == []  # training is given time to stop first
        deadline = time.monotonic() + 5
        while not exits and time.monotonic() < deadline:
            time.sleep(0.01)
    assert exits == [WEDGED_EXIT_CODE]


def test_a_job_that_ends_in_time_is_not_stopped(tmp_path: Path) -> None:
    context = idle_context(tmp_path)
    exits: list[int] = []
    with Watchdog(context, 0.3, exit_after=0.0, exit_process=exits.append):
        pass  # the job ended before its limit
    time.sleep(0.5)
    assert not context.timed_out.is_set()
    assert not context.should_stop()
    assert exits == []


def test_without_a_limit_there_is_no_watchdog(tmp_path: Path) -> None:
    context = idle_context(tmp_path)
    with Watchdog(context, None, exit_after=0.0) as watchdog:
        assert watchdog.timers == []


def test_a_worker_shutting_down_stops_retrying_an_unreachable_api() -> None:
    # Eight tries against a closed port would back off for about 45 s in all.
    give_up = threading.Event()
    reporter = ApiReporter("http://127.0.0.1:9", "t" * 30, give_up=give_up)
    threading.Timer(0.5, give_up.set).start()  # SIGTERM arrives while it retries
    started = time.monotonic()

    with pytest.raises(ConnectionError, match="API unreachable"):
        reporter.claim("job_" + "a" * 24, "test-worker")

    assert time.monotonic() - started < 5
    reporter.close()


@pytest.fixture
def shutting_down() -> Iterator[None]:
    SHUTTING_DOWN.set()
    try:
        yield
    finally:
        SHUTTING_DOWN.clear()


@pytest.mark.usefixtures("shutting_down")
def test_a_stopping_worker_puts_a_new_message_back_before_claiming() -> None:
    # The API URL points nowhere: a claim would fail after retries instead of this at once.
    with pytest.raises(Reject):
        run_job.run("job_" + "a" * 24)


@pytest.mark.usefixtures("shutting_down")
def test_an_error_raised_by_the_shutdown_gives_the_job_back(tmp_path: Path) -> None:
    def interrupted_load() -> Any:
        raise NotImplementedError("the solo pool does not implement kill_job")  # as Celery does

    outcome = train_and_upload(tiny_spec(), idle_context(tmp_path), interrupted_load)

    assert outcome == PREEMPTED


def test_the_same_error_without_a_shutdown_fails_the_job(tmp_path: Path) -> None:
    def broken_load() -> Any:
        raise NotImplementedError("a bug")

    outcome = train_and_upload(tiny_spec(), idle_context(tmp_path), broken_load)

    assert outcome["status"] == "failed"
    assert outcome["error_type"] == "internal"


class SlowFirstHeartbeat:
    """A reporter whose first heartbeat stays in flight until released; it notes the fraction
    of each report in the order the API would receive them."""

    def __init__(self) -> None:
        self.arrived: list[float] = []
        self.first_in_flight = threading.Event()
        self.release_first = threading.Event()

    def heartbeat(self, job_id: str, attempt: int, report: dict[str, Any]) -> dict[str, Any]:
        if not self.first_in_flight.is_set():
            self.first_in_flight.set()
            self.release_first.wait(timeout=10)
        self.arrived.append(report["fraction"])
        return {"cancel": False}


def test_beats_from_two_threads_reach_the_api_in_the_order_they_were_taken(
    tmp_path: Path,
) -> None:
    # The heartbeat thread and the training thread (at an epoch's end) both beat. A report
    # taken later must not overtake one still on its way: the stream's progress would go back.
    reporter = SlowFirstHeartbeat()
    context = JobContext(cast(ApiReporter, reporter), "job_" + "a" * 24, 1, 2, tmp_path)
    context.progress.batch_done(1, 9, 10, 90)
    heartbeat_thread = threading.Thread(target=context.beat)
    heartbeat_thread.start()
    assert reporter.first_in_flight.wait(timeout=10)

    context.progress.batch_done(1, 10, 10, 100)  # the epoch's last batch
    epoch_end = threading.Thread(target=context.beat)
    epoch_end.start()
    epoch_end.join(timeout=0.5)
    waited_for_the_first = epoch_end.is_alive()
    reporter.release_first.set()
    heartbeat_thread.join(timeout=10)
    epoch_end.join(timeout=10)

    assert waited_for_the_first
    assert reporter.arrived == [pytest.approx(0.45), pytest.approx(0.5)]
