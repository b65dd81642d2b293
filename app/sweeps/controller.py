"""The sweep controller: start trials while there is room, end the sweep when it is done.

All its state is in the database (the sweep row and its trials, which are jobs): any API process
may advance any sweep, on submit and on every reconciler pass. It works under the sweep's row lock
(SELECT ... FOR UPDATE on PostgreSQL; SQLite has one writer), and the trial count it raises is
committed with the trials it creates, so whatever restarts or races happen, no trial number is
used twice and no more than ``max_trials`` trials are ever created.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from taas.app.auth.models import Tenant
from taas.app.core.config import Settings
from taas.app.core.db import utcnow
from taas.app.core.errors import DomainError, InsufficientStorage, TooManyRequests
from taas.app.jobs.models import TERMINAL_STATUSES, Job
from taas.app.jobs.service import cancel_job, submit_job
from taas.app.spec import JobSpec, LimitViolation
from taas.app.sweeps.models import Sweep
from taas.app.sweeps.objectives import trial_values
from taas.app.sweeps.search import FinishedTrial, apply_params, parse_parameters, suggest
from taas.app.webhooks.events import sweep_completed

logger = logging.getLogger(__name__)


def trials_of(session: Session, sweep: Sweep) -> list[Job]:
    query = select(Job).where(Job.sweep_id == sweep.id).order_by(Job.trial_number)
    return list(session.scalars(query))


def advance_sweep(session: Session, sweep_id: str, settings: Settings) -> list[Job]:
    """Start the trials there is room for, or end the sweep. Returns the new trials, to be sent
    to the broker after the commit."""
    sweep = _locked_sweep(session, sweep_id)
    if sweep is None or sweep.status != "running":
        return []
    trials = trials_of(session, sweep)
    ended = _end_reason(sweep, trials)
    if ended is not None:
        _end(session, sweep, trials, *ended)
        return []
    active = sum(1 for trial in trials if trial.status not in TERMINAL_STATUSES)
    started: list[Job] = []
    while active < sweep.max_parallel and sweep.trials_started < sweep.max_trials:
        trial = _start_trial(session, sweep, trials + started, settings)
        if trial is None:
            break
        started.append(trial)
        active += 1
    return started


def _locked_sweep(session: Session, sweep_id: str) -> Sweep | None:
    """The sweep, locked until the commit: two passes over one sweep at once (its submit's, the
    reconciler's, a trial's finish) must not both start trial N. PostgreSQL locks the row; SQLite
    has no row locks, so a write that changes nothing takes its database write lock first, and
    the other pass waits for this one's commit before it reads."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Sweep).where(Sweep.id == sweep_id).values(status=Sweep.status),
            execution_options={"synchronize_session": False},
        )
    return session.get(Sweep, sweep_id, with_for_update=True, populate_existing=True)


def _end_reason(sweep: Sweep, trials: list[Job]) -> tuple[str, str] | None:
    """(status, reason) when the sweep is over, else None."""
    failed_in_a_row = _failures_in_a_row(trials)
    if failed_in_a_row >= sweep.max_failures:
        return (
            "failed",
            f"{failed_in_a_row} trials in a row failed; the last: {_last_error(trials)}",
        )
    if sweep.max_seconds is not None and _age(sweep) >= timedelta(seconds=sweep.max_seconds):
        return "succeeded", f"max_seconds ({sweep.max_seconds:g} s) reached"
    all_started = sweep.trials_started >= sweep.max_trials
    if all_started and all(trial.status in TERMINAL_STATUSES for trial in trials):
        return "succeeded", f"all {sweep.max_trials} trials ended"
    return None


def _age(sweep: Sweep) -> timedelta:
    return utcnow() - sweep.created_at


def _failures_in_a_row(trials: list[Job]) -> int:
    ended = sorted(
        (trial for trial in trials if trial.status in TERMINAL_STATUSES and trial.finished_at),
        key=lambda trial: trial.finished_at or utcnow(),
    )
    count = 0
    for trial in reversed(ended):
        if trial.status != "failed":
            break
        count += 1
    return count


def _last_error(trials: list[Job]) -> str:
    failed = [trial for trial in trials if trial.status == "failed" and trial.finished_at]
    last = max(failed, key=lambda trial: trial.finished_at or utcnow(), default=None)
    return f"{last.error_type}: {last.error_message}" if last else "unknown"


def _end(session: Session, sweep: Sweep, trials: list[Job], status: str, reason: str) -> None:
    """The sweep is over: its unfinished trials are cancelled (none run for nothing)."""
    for trial in trials:
        if trial.status in ("queued", "running"):
            cancel_job(session, trial)
    sweep.status, sweep.reason, sweep.finished_at = status, reason, utcnow()
    sweep_completed(session, sweep)
    logger.info("sweep %s %s: %s", sweep.id, status, reason)
    session.flush()


def _start_trial(
    session: Session, sweep: Sweep, trials: list[Job], settings: Settings
) -> Job | None:
    """Create trial number ``trials_started``; None when the tenant has no room for it now (its
    cap on active jobs): the next pass tries again."""
    parameters = parse_parameters(sweep.parameters)
    finished = [_finished(sweep, trial) for trial in trials if trial.status in TERMINAL_STATUSES]
    directions = tuple(item["goal"] for item in sweep.objective)
    number = sweep.trials_started
    params = suggest(sweep.method, parameters, sweep.seed, number, finished, directions)
    spec = JobSpec.model_validate(_trial_spec(sweep, number, params))
    tenant = session.get(Tenant, sweep.tenant_id)
    assert tenant is not None
    try:  # it checks everything before it adds a row: a refusal leaves nothing behind
        job = submit_job(session, tenant, spec, settings)
    except (TooManyRequests, InsufficientStorage) as error:  # for now: the next pass retries
        logger.info("sweep %s: trial %d not started yet: %s", sweep.id, number, error)
        return None
    except (DomainError, LimitViolation) as error:
        # These params make a spec the service refuses (a combination or a middle of a range
        # that the checks at submit could not try): trying again would refuse it again.
        message = error.errors if isinstance(error, LimitViolation) else error.detail
        reason = f"trial {number} with {params} makes a spec the service refuses: {message}"
        _end(session, sweep, trials, "failed", reason)
        return None
    job.sweep_id, job.trial_number, job.params = sweep.id, number, params
    sweep.trials_started = number + 1
    session.flush()
    return job


def _trial_spec(sweep: Sweep, number: int, params: dict[str, Any]) -> dict[str, Any]:
    """The base spec with the trial's params, named after the sweep so that the trial reads as
    one in the job list (unless the sweep searches over the name itself)."""
    spec = apply_params(sweep.spec, params)
    if "name" not in params:
        spec["name"] = f"{sweep.name[:90]} trial {number}"
    return spec


def _finished(sweep: Sweep, trial: Job) -> FinishedTrial:
    values = trial_values(sweep, trial) if trial.status == "succeeded" else None
    return FinishedTrial(trial.trial_number or 0, trial.params or {}, values)
