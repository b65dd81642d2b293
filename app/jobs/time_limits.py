"""How long one attempt of a job may run before it is stopped and fails as ``timeout``.

``training.max_seconds`` is the job's training budget: the trainer stops there by itself and keeps
its best model (the job succeeds). The time limit is the hard bound around it: that budget, or the
service's longest job when the spec sets none, plus a grace for loading data, the final evaluation
and exports. Three parties enforce it, each later than the one before, so the first that can act
does: the worker stops its own training at the limit; the reconciler fails a job whose worker
did not report within a lease after it; Celery's per-task hard limit ends a prefork child that
ignored both.
"""

from __future__ import annotations

from typing import Any

from taas.app.core.config import Settings


def attempt_time_limit(spec: dict[str, Any], settings: Settings) -> float:
    """Seconds one attempt of a job with this (normalized) spec may run, from its claim."""
    return _budget(spec, settings) + settings.time_limit_grace_seconds


def describe_time_limit(spec: dict[str, Any], settings: Settings) -> str:
    """The limit and where it comes from, in words a user can act on."""
    budget = _budget(spec, settings)
    source = (
        "training.max_seconds"
        if spec.get("training", {}).get("max_seconds")
        else "the longest job this service runs, TAAS_MAX_JOB_SECONDS"
    )
    grace = settings.time_limit_grace_seconds
    return (
        f"{format_seconds(budget + grace)} ({source} = {format_seconds(budget)}, "
        f"plus {format_seconds(grace)} for loading data and exports)"
    )


def _budget(spec: dict[str, Any], settings: Settings) -> float:
    max_seconds = spec.get("training", {}).get("max_seconds")
    return float(max_seconds) if max_seconds else settings.max_job_seconds


def format_seconds(seconds: float) -> str:
    """3725 -> '1 h 2 min 5 s'; short and exact enough for a message."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{secs} s" if secs or not (hours or minutes) else "")
    return " ".join(part for part in parts if part)
