"""How the CLI shows sweeps as text: the objective, the progress line and the leaderboard.

The leaderboard ranks the trials that count (succeeded, objective known, within the
constraint) by the first objective, then lists the others by trial number; for a two-objective
sweep the Pareto front is marked and ranked first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from taas.app.cli.format import duration, table
from taas.app.core.wording import counted

SweepEnd = frozenset({"succeeded", "failed", "cancelled"})
UNFINISHED = ("queued", "running", "cancelling")


def objective_text(sweep: dict[str, Any]) -> str:
    """'maximize val_accuracy, minimize train_seconds where val_accuracy >= 0.9'."""
    text = ", ".join(f"{item['goal']} {item['metric']}" for item in sweep["objective"])
    bounds = []
    for metric, bound in (sweep.get("constraint") or {}).items():
        if bound.get("min") is not None:
            bounds.append(f"{metric} >= {bound['min']:g}")
        if bound.get("max") is not None:
            bounds.append(f"{metric} <= {bound['max']:g}")
    return f"{text} where {' and '.join(bounds)}" if bounds else text


def metric_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "train_seconds":
        return f"{value:.2f}s" if value < 60 else duration(value)
    return f"{value:.4f}"


def trial_result(sweep: dict[str, Any], trial: dict[str, Any]) -> str:
    """'trial 3 (job_...): val_accuracy=0.9123'."""
    values = trial["values"] or []
    shown = ", ".join(
        f"{item['metric']}={metric_value(item['metric'], value)}"
        for item, value in zip(sweep["objective"], values, strict=False)
    )
    return f"trial {trial['number']} ({trial['job_id']}): {shown or 'no value yet'}"


def progress_line(sweep: dict[str, Any]) -> str:
    """One line for `taas sweep submit --wait`: trials ended and in flight, and the best."""
    counts: Counter[str] = Counter(sweep["counts"])
    ended = sum(count for status, count in counts.items() if status not in UNFINISHED)
    in_flight = [f"{counts[status]} {status}" for status in UNFINISHED if counts[status]]
    pruned = sum(1 for trial in sweep["trials"] if trial["stop_reason"] == "pruned")
    failed = counts["failed"]
    line = f"{sweep['id']} {sweep['status']}: {ended}/{sweep['max_trials']} trials ended"
    details = in_flight + ([f"{pruned} pruned"] if pruned else [])
    details += [f"{failed} failed"] if failed else []
    if details:
        line += f" ({', '.join(details)})"
    return line + "; " + best_text(sweep)


def best_text(sweep: dict[str, Any]) -> str:
    if sweep["pareto"]:
        return f"Pareto front: trials {', '.join(str(t['number']) for t in sweep['pareto'])}"
    if sweep["best"]:
        return "best " + trial_result(sweep, sweep["best"])
    if sweep["status"] == "running":
        return "no best trial yet"
    constraint = " within its constraint" if sweep.get("constraint") else ""
    return f"no trial finished{constraint}: no best trial"


def sweep_summary(sweep: dict[str, Any]) -> list[str]:
    """`taas sweep status`: what the sweep searches for, how far it is, then the leaderboard."""
    fields = [
        ("sweep", f"{sweep['id']}  {sweep['name']}"),
        ("status", sweep["status"] + (f" ({sweep['reason']})" if sweep["reason"] else "")),
        ("search", f"{sweep['method']}, {counted(len(sweep['parameters']), 'parameter')}"),
        ("objective", objective_text(sweep)),
        ("trials", _trial_counts(sweep)),
        ("best", best_text(sweep).removeprefix("best ")),
    ]
    if sweep["early_stopping"]:
        fields.append(("stopping", _early_stopping_text(sweep["early_stopping"])))
    lines = [f"{label:<11}{value}" for label, value in fields]
    if sweep["trials"]:
        lines += ["", *leaderboard(sweep)]
    return lines


def _trial_counts(sweep: dict[str, Any]) -> str:
    counts = ", ".join(f"{count} {status}" for status, count in sorted(sweep["counts"].items()))
    return f"{sum(sweep['counts'].values())} of at most {sweep['max_trials']}" + (
        f" ({counts})" if counts else ""
    )


def _early_stopping_text(rule: dict[str, Any]) -> str:
    options = ", ".join(f"{key} {value}" for key, value in rule.items() if key != "method")
    return f"{rule['method']} ({options})"


def leaderboard(sweep: dict[str, Any]) -> list[str]:
    """One row per trial, best first; params as short names (the last part of their path)."""
    trials = ranked_trials(sweep)
    front = {trial["number"] for trial in sweep["pareto"] or []}
    names = short_names(list(sweep["parameters"]))
    objectives = [item["metric"] for item in sweep["objective"]]
    # A constraint's metric (val_accuracy for "the fastest that reaches 90%") is shown too.
    bounded = [metric for metric in sweep.get("constraint") or {} if metric not in objectives]
    headers = [
        "RANK",
        "TRIAL",
        "STATUS",
        *(metric.upper() for metric in objectives + bounded),
        "EPOCHS",
        "TEST ACC",
        "JOB",
        "PARAMS",
    ]
    rows = []
    for rank, trial in trials:
        values = trial["values"] or [None] * len(objectives)
        rows.append(
            [
                (f"{rank}" + ("*" if trial["number"] in front else "")) if rank else "-",
                str(trial["number"]),
                _trial_status(trial),
                *(metric_value(m, v) for m, v in zip(objectives, values, strict=True)),
                *(metric_value(metric, trial["metrics"].get(metric)) for metric in bounded),
                str(trial["epochs_trained"]),
                metric_value("test_accuracy", trial["test_accuracy"]),
                trial["job_id"],
                params_text(trial["params"], names),
            ]
        )
    numeric = frozenset({0, 1, *range(3, 3 + len(objectives) + len(bounded) + 2)})
    lines = table(headers, rows, right=numeric)
    if front:
        lines.append("* on the Pareto front")
    return lines


def _trial_status(trial: dict[str, Any]) -> str:
    if trial["stop_reason"] == "pruned":
        return "pruned"
    if trial["within_constraint"] is False and trial["status"] == "succeeded":
        return "succeeded (outside constraint)"
    return str(trial["status"])


def ranked_trials(sweep: dict[str, Any]) -> list[tuple[int | None, dict[str, Any]]]:
    """The trials that count, ranked (front first for two objectives), then the rest by
    number with no rank."""
    first = sweep["objective"][0]
    sign = -1.0 if first["goal"] == "maximize" else 1.0
    front = {trial["number"] for trial in sweep["pareto"] or []}
    counted = [trial for trial in sweep["trials"] if _counts(trial)]
    counted.sort(key=lambda t: (t["number"] not in front, sign * t["values"][0], t["number"]))
    rest = sorted((t for t in sweep["trials"] if not _counts(t)), key=lambda t: t["number"])
    return [(index + 1, trial) for index, trial in enumerate(counted)] + [(None, t) for t in rest]


def _counts(trial: dict[str, Any]) -> bool:
    return bool(trial["status"] == "succeeded" and trial["values"] and trial["within_constraint"])


def short_names(paths: Sequence[str]) -> dict[str, str]:
    """`training.lr` -> `lr`, unless two paths end alike (then both keep their full path)."""
    ends = Counter(path.rsplit(".", 1)[-1] for path in paths)
    return {
        path: path.rsplit(".", 1)[-1] if ends[path.rsplit(".", 1)[-1]] == 1 else path
        for path in paths
    }


def params_text(params: dict[str, Any], names: dict[str, str]) -> str:
    return " ".join(
        f"{names.get(path, path)}={_param_value(value)}" for path, value in params.items()
    )


def _param_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ",".join(_param_value(item) for item in value) + "]"
    return str(value)
