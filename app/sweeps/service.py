"""Sweep logic for the public API: create, describe, list, cancel, delete. Flushes, never
commits; the controller (controller.py) starts the trials."""

from __future__ import annotations

import copy
import secrets
from collections import Counter
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from taas.app.auth.models import Tenant
from taas.app.core.db import utcnow
from taas.app.core.errors import Conflict, InvalidInput, InvalidInputs, NotFound
from taas.app.jobs.models import TERMINAL_STATUSES, Job
from taas.app.jobs.service import cancel_job, delete_job
from taas.app.spec import JobSpec, Limits, default_model
from taas.app.spec.limits import maxima_beside
from taas.app.spec.suggestions import spec_hint
from taas.app.sweeps.controller import trials_of
from taas.app.sweeps.models import Sweep
from taas.app.sweeps.objectives import measured, meets_constraint, objective_values
from taas.app.sweeps.pruning import pruning_metric
from taas.app.sweeps.schemas import SweepIn, SweepOut, TrialOut
from taas.app.sweeps.search import check_space, pareto_front, parse_parameters
from taas.app.webhooks.events import sweep_completed

SWEEP_ID_PREFIX = "swp_"


def create_sweep(
    session: Session,
    tenant: Tenant,
    request: SweepIn,
    auto_device: Literal["cpu", "cuda"],
    limits: Limits,
) -> Sweep:
    """Check the whole search space against the spec (a 422 naming the parameter, before any
    trial exists) and store the sweep as running. ``auto_device``: where ``device: auto`` jobs
    run, which picks the default model of a spec that names none."""
    base = _base_spec(request.spec, auto_device, limits)
    parameters = parse_parameters(request.parameters)
    check_space(base, parameters, request.method, request.max_trials, limits)
    objectives = [objective.model_dump() for objective in request.objectives()]
    sweep = Sweep(
        id=f"{SWEEP_ID_PREFIX}{secrets.token_hex(12)}",
        tenant_id=tenant.id,
        name=request.name or f"sweep-{request.method}",
        status="running",
        spec=base,
        parameters=request.parameters,
        method=request.method,
        objective=objectives,
        constraint={k: v.model_dump() for k, v in (request.constraint or {}).items()} or None,
        early_stopping=_early_stopping(request),
        max_trials=request.max_trials,
        max_parallel=request.max_parallel,
        max_failures=request.max_failures,
        max_seconds=request.max_seconds,
        seed=request.seed,
        trials_started=0,
    )
    session.add(sweep)
    session.flush()
    return sweep


def _early_stopping(request: SweepIn) -> dict[str, Any] | None:
    if request.early_stopping is None:
        return None
    if pruning_metric([item.model_dump() for item in request.objectives()]) is None:
        raise InvalidInput(
            ["body", "early_stopping"],
            "early stopping compares a validation metric: the objective needs val_accuracy or "
            "val_loss",
        )
    return request.early_stopping.model_dump()


def _base_spec(
    spec: dict[str, Any], auto_device: Literal["cpu", "cuda"], limits: Limits
) -> dict[str, Any]:
    """The base spec the trials' params apply to, checked on its own first (a 422 under
    ``spec``). Trials are selected on a holdout of the training split, never on the test split,
    unless the spec asks otherwise; a spec without a model names the default one's ``arch``, so
    that ``model.activation`` and the like can be swept on it."""
    base = copy.deepcopy(spec)
    errors = _spec_errors(base, limits)
    if errors:
        raise InvalidInputs(errors)
    training = base.setdefault("training", {})
    training.setdefault("validate_on", "holdout")
    device = base.get("device", "auto")
    runs_on = auto_device if device == "auto" else device
    base.setdefault("model", {"arch": default_model(runs_on).arch})
    return base


def _spec_errors(spec: dict[str, Any], limits: Limits) -> list[dict[str, Any]]:
    """Every problem of the base spec, located under ``spec``: what the schema refuses (with a
    did-you-mean) and the configured maxima it exceeds."""
    try:
        JobSpec.model_validate(spec)
        errors: list[dict[str, Any]] = []
    except ValidationError as error:
        errors = [_schema_error(spec, detail) for detail in error.errors()]
    return errors + maxima_beside(spec, limits, ["body", "spec"], errors)


def _schema_error(spec: dict[str, Any], detail: Any) -> dict[str, Any]:
    hint = spec_hint({"loc": ["body", *detail["loc"]], "type": detail["type"]}, spec)
    message = detail["msg"] + hint
    return {"loc": ["body", "spec", *detail["loc"]], "msg": message, "type": detail["type"]}


def get_owned_sweep(session: Session, tenant: Tenant, sweep_id: str) -> Sweep:
    sweep = session.get(Sweep, sweep_id) if sweep_id.startswith(SWEEP_ID_PREFIX) else None
    if sweep is None or sweep.tenant_id != tenant.id:
        raise NotFound(f"sweep {sweep_id[:64]!r} not found")
    return sweep


def list_sweeps(session: Session, tenant: Tenant, limit: int) -> list[Sweep]:
    query = (
        select(Sweep)
        .where(Sweep.tenant_id == tenant.id)
        .order_by(Sweep.created_at.desc(), Sweep.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def cancel_sweep(session: Session, sweep: Sweep) -> None:
    """No more trials; the unfinished ones are cancelled."""
    if sweep.status != "running":
        raise Conflict(f"sweep {sweep.id} has already ended ({sweep.status})")
    for trial in trials_of(session, sweep):
        if trial.status in ("queued", "running"):
            cancel_job(session, trial)
    sweep.status, sweep.reason, sweep.finished_at = "cancelled", "cancelled by the user", utcnow()
    sweep_completed(session, sweep)
    session.flush()


def delete_sweep(session: Session, sweep: Sweep) -> list[str]:
    """Delete an ended sweep and its trials; returns the trials' job ids (their files go after
    the commit)."""
    trials = trials_of(session, sweep)
    if sweep.status == "running" or any(t.status not in TERMINAL_STATUSES for t in trials):
        raise Conflict(f"sweep {sweep.id} has not ended; cancel it and wait for its trials")
    for trial in trials:
        delete_job(session, trial)
    session.delete(sweep)
    session.flush()
    return [trial.id for trial in trials]


def describe_sweep(session: Session, sweep: Sweep) -> SweepOut:
    trials = trial_descriptions(sweep, trials_of(session, sweep))
    candidates = [
        out
        for out in trials
        if out.status == "succeeded" and out.values is not None and out.within_constraint
    ]
    directions = tuple(item["goal"] for item in sweep.objective)
    best, pareto = None, None
    if len(directions) == 1 and candidates:
        sign = 1.0 if directions[0] == "maximize" else -1.0
        best = max(candidates, key=lambda out: sign * (out.values or [0.0])[0])
    elif len(directions) == 2:
        front = set(
            pareto_front([(out.number, tuple(out.values or ())) for out in candidates], directions)
        )
        pareto = [out for out in candidates if out.number in front]
    return SweepOut(
        id=sweep.id,
        name=sweep.name,
        status=sweep.status,
        reason=sweep.reason,
        method=sweep.method,
        objective=sweep.objective,
        constraint=sweep.constraint,
        parameters=sweep.parameters,
        spec=sweep.spec,
        max_trials=sweep.max_trials,
        max_parallel=sweep.max_parallel,
        max_seconds=sweep.max_seconds,
        max_failures=sweep.max_failures,
        seed=sweep.seed,
        early_stopping=sweep.early_stopping,
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
        counts=dict(Counter(trial.status for trial in trials)),
        trials=trials,
        best=best,
        pareto=pareto,
    )


def trial_descriptions(sweep: Sweep, trials: list[Job]) -> list[TrialOut]:
    return [_describe_trial(sweep, trial) for trial in trials]


def _describe_trial(sweep: Sweep, trial: Job) -> TrialOut:
    ended = trial.status in TERMINAL_STATUSES
    metrics = measured(trial)
    values = objective_values(sweep, metrics) if ended else None
    return TrialOut(
        job_id=trial.id,
        number=trial.trial_number or 0,
        status=trial.status,
        params=trial.params or {},
        values=list(values) if values is not None else None,
        metrics=dict(metrics),
        within_constraint=meets_constraint(sweep, metrics) if ended else None,
        epochs_trained=trial.progress_epoch,
        stop_reason=trial.stop_reason,
        test_accuracy=trial.test_accuracy,
    )
