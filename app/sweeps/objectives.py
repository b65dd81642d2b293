"""What a trial measured, its objective values, and whether it meets the sweep's constraint."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import object_session

from taas.app.jobs.models import Job, MetricPoint
from taas.app.sweeps.models import Sweep

Measured = Mapping[str, float | None]


def measured(trial: Job) -> Measured:
    """The validation metrics of the trial's last epoch (on a holdout of the training split
    unless its spec says otherwise) and its training seconds (the sum over its epochs)."""
    session = object_session(trial)
    assert session is not None
    query = select(MetricPoint).where(MetricPoint.job_id == trial.id).order_by(MetricPoint.epoch)
    points = list(session.scalars(query))
    if not points:
        return {"val_accuracy": None, "val_loss": None, "train_seconds": None}
    return {
        "val_accuracy": points[-1].val_accuracy,
        "val_loss": points[-1].val_loss,
        "train_seconds": sum(point.epoch_seconds or 0.0 for point in points),
    }


def objective_values(sweep: Sweep, metrics: Measured) -> tuple[float, ...] | None:
    """The objective values, in the sweep's order; None while one is unknown."""
    values = [metrics[item["metric"]] for item in sweep.objective]
    if any(value is None for value in values):
        return None
    return tuple(float(value) for value in values if value is not None)


def trial_values(sweep: Sweep, trial: Job) -> tuple[float, ...] | None:
    return objective_values(sweep, measured(trial))


def meets_constraint(sweep: Sweep, metrics: Measured) -> bool:
    """Whether the metrics meet the sweep's constraint (e.g. val_accuracy at least 0.9)."""
    for metric, bound in (sweep.constraint or {}).items():
        value = metrics[metric]
        if value is None:
            return False
        if bound.get("min") is not None and value < bound["min"]:
            return False
        if bound.get("max") is not None and value > bound["max"]:
            return False
    return True
