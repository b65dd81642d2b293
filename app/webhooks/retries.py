"""When a failed delivery is tried again: the configured schedule (Standard Webhooks' by
default), with jitter, or later when the receiver's ``Retry-After`` asks for longer."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# Up to this fraction is added to each delay, so that the retries of many deliveries that
# failed together (a receiver's outage) do not all arrive again in the same second.
JITTER = 0.1


def next_delay(
    schedule: tuple[float, ...],
    attempts_made: int,
    retry_after: float | None = None,
    *,
    jitter: float = JITTER,
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts failed; None when the
    schedule is used up (the delivery gives up). A ``Retry-After`` longer than the scheduled
    delay wins, up to the schedule's longest delay, so a receiver cannot park a delivery for
    ever."""
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * (1 + random.uniform(0, jitter))
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, max(schedule))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from now: delay-seconds or an HTTP date; None if absent or
    unreadable (then the schedule alone decides)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def due_at(now: datetime, delay: float) -> datetime:
    return now + timedelta(seconds=delay)
