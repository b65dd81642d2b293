"""Early stopping of a sweep's trials: decided when a trial reports an epoch, from the epoch
metrics of its sweep's other trials (all in the database), and delivered to its worker with the
next heartbeat. The trial then ends ``succeeded`` with ``stop_reason: "pruned"``, its model kept.

Written here rather than with Optuna's pruners: those judge a trial inside a study of running
trials, and the study this service rebuilds from its rows holds finished trials only.

- ``median``: from ``min_epochs`` on, once ``min_trials`` other trials reached the same epoch, a
  trial worse than their median is stopped (Optuna's MedianPruner, over all trials).
- ``asha``: at the rungs ``min_epochs * reduction_factor**k`` epochs, a trial goes on only if it
  is in the top ``1/reduction_factor`` of the trials that reached that rung so far (the first
  ones always go on: asynchronous successive halving never waits for a full rung).
"""

from __future__ import annotations

import statistics

from sqlalchemy import select
from sqlalchemy.orm import Session

from taas.app.jobs.models import Job, MetricPoint
from taas.app.sweeps.models import Sweep

PRUNABLE_METRICS = ("val_accuracy", "val_loss")


def pruning_metric(objective: list[dict[str, str]]) -> tuple[str, str] | None:
    """(metric, goal) that early stopping compares: the first validation objective."""
    for item in objective:
        if item["metric"] in PRUNABLE_METRICS:
            return item["metric"], item["goal"]
    return None


def prune_reason(session: Session, sweep: Sweep, trial: Job, epoch: int) -> str | None:
    """Why the trial should stop after ``epoch``, or None to go on."""
    config = sweep.early_stopping
    measured = pruning_metric(sweep.objective)
    if not config or measured is None:
        return None
    metric, goal = measured
    values = _values_at(session, sweep, metric, epoch)
    mine = values.pop(trial.id, None)
    if mine is None:
        return None
    sign = 1.0 if goal == "maximize" else -1.0
    if config["method"] == "asha":
        return _asha(config, epoch, metric, mine, list(values.values()), sign)
    return _median(config, epoch, metric, mine, list(values.values()), sign)


def _values_at(session: Session, sweep: Sweep, metric: str, epoch: int) -> dict[str, float]:
    column = getattr(MetricPoint, metric)
    rows = session.execute(
        select(MetricPoint.job_id, column)
        .join(Job, Job.id == MetricPoint.job_id)
        .where(Job.sweep_id == sweep.id, MetricPoint.epoch == epoch, column.is_not(None))
    )
    return {job_id: float(value) for job_id, value in rows}


def _asha(
    config: dict[str, int], epoch: int, metric: str, mine: float, others: list[float], sign: float
) -> str | None:
    rung = config["min_epochs"]
    while rung < epoch:
        rung *= config["reduction_factor"]
    if rung != epoch:
        return None  # not a rung
    ranked = sorted([mine, *others], key=lambda value: -sign * value)
    kept = max(len(ranked) // config["reduction_factor"], 1)
    threshold = ranked[kept - 1]
    if sign * mine >= sign * threshold:
        return None
    return (
        f"pruned by ASHA at epoch {epoch}: {metric} {mine:.4f} is not in the top {kept} of the "
        f"{len(ranked)} trials at this rung (needs {threshold:.4f})"
    )


def _median(
    config: dict[str, int], epoch: int, metric: str, mine: float, others: list[float], sign: float
) -> str | None:
    if epoch < config["min_epochs"] or len(others) < config["min_trials"]:
        return None
    median = statistics.median(others)
    if sign * mine >= sign * median:
        return None
    return (
        f"pruned at epoch {epoch}: {metric} {mine:.4f} is worse than the median {median:.4f} "
        f"of {len(others)} other trials there"
    )
