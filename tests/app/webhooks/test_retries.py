"""The retry schedule (Standard Webhooks' by default) and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from taas.app.core.config import Settings
from taas.app.webhooks.retries import next_delay, parse_retry_after

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SPEC_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def test_the_default_schedule_is_the_specs() -> None:
    assert Settings().webhook_retry_schedule == SPEC_SCHEDULE
    assert 24 < sum(SPEC_SCHEDULE) / 3600 < 28  # about a day of trying (27.6 h)


def test_each_failure_waits_the_next_delay_then_gives_up() -> None:
    delays = [next_delay(SPEC_SCHEDULE, made, jitter=0) for made in range(1, 9)]
    assert delays == [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, None]


def test_jitter_only_lengthens_a_delay_and_by_at_most_a_tenth() -> None:
    delays = {next_delay(SPEC_SCHEDULE, 2) for _ in range(200)}
    assert all(delay is not None and 300.0 <= delay <= 330.0 for delay in delays)
    assert len(delays) > 100  # spread, so retries after an outage do not arrive together


def test_a_longer_retry_after_wins_a_shorter_one_does_not() -> None:
    assert next_delay(SPEC_SCHEDULE, 1, retry_after=120, jitter=0) == 120
    assert next_delay(SPEC_SCHEDULE, 2, retry_after=120, jitter=0) == 300


def test_retry_after_is_capped_by_the_longest_delay() -> None:
    assert next_delay(SPEC_SCHEDULE, 1, retry_after=10**9, jitter=0) == 36000.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("120", NOW) == 120
    later = format_datetime(NOW + timedelta(minutes=10), usegmt=True)
    assert parse_retry_after(later, NOW) == 600
    earlier = format_datetime(NOW - timedelta(minutes=10), usegmt=True)
    assert parse_retry_after(earlier, NOW) == 0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_the_schedule_is_configurable_as_comma_separated_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAAS_WEBHOOK_RETRY_SCHEDULE", "0, 0.5,2")
    assert Settings().webhook_retry_schedule == (0.0, 0.5, 2.0)
    monkeypatch.setenv("TAAS_WEBHOOK_RETRY_SCHEDULE", "0,soon")
    with pytest.raises(ValueError, match="TAAS_WEBHOOK_RETRY_SCHEDULE"):
        Settings()
