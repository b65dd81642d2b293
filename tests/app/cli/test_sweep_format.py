"""How `taas sweep` shows a sweep: objective, progress line, leaderboard order and columns."""

from __future__ import annotations

from typing import Any

from taas.app.cli.sweep_format import (
    leaderboard,
    objective_text,
    progress_line,
    short_names,
    sweep_summary,
)


def trial(number: int, status: str, values: list[float] | None, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": f"job_{number:04d}",
        "number": number,
        "status": status,
        "params": {"training.lr": 0.01 * (number + 1), "model.channels": [8, 16]},
        "values": values,
        "metrics": {},
        "within_constraint": extra.pop("within_constraint", values is not None),
        "epochs_trained": extra.pop("epochs_trained", 3),
        "stop_reason": extra.pop("stop_reason", "completed" if values else None),
        "test_accuracy": extra.pop("test_accuracy", None),
    }


def sweep(trials: list[dict[str, Any]], objective: list[dict[str, str]], **extra: Any) -> Any:
    counts: dict[str, int] = {}
    for item in trials:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return {
        "id": "swp_1",
        "name": "search",
        "status": "running",
        "reason": None,
        "method": "tpe",
        "objective": objective,
        "constraint": None,
        "parameters": {"training.lr": {}, "model.channels": {}},
        "max_trials": 6,
        "early_stopping": None,
        "counts": counts,
        "trials": trials,
        "best": None,
        "pareto": None,
        **extra,
    }


ACCURACY = {"metric": "val_accuracy", "goal": "maximize"}
SECONDS = {"metric": "train_seconds", "goal": "minimize"}


def test_leaderboard_ranks_what_counts_best_first_then_the_rest_by_number() -> None:
    trials = [
        trial(0, "succeeded", [0.81]),
        trial(1, "succeeded", [0.93], test_accuracy=0.9211),
        trial(2, "failed", None),
        trial(3, "succeeded", [0.88], stop_reason="pruned", epochs_trained=1),
        trial(4, "running", None),
    ]
    lines = leaderboard(sweep(trials, [ACCURACY], best=trials[1]))
    assert lines[0].split()[:5] == ["RANK", "TRIAL", "STATUS", "VAL_ACCURACY", "EPOCHS"]
    ranked = [line.split()[:3] for line in lines[1:]]
    assert ranked == [
        ["1", "1", "succeeded"],
        ["2", "3", "pruned"],
        ["3", "0", "succeeded"],
        ["-", "2", "failed"],
        ["-", "4", "running"],
    ]
    assert "0.9211" in lines[1]
    assert "lr=0.02 channels=[8,16]" in lines[1]


def test_a_trial_outside_the_constraint_is_listed_but_not_ranked() -> None:
    trials = [
        trial(0, "succeeded", [12.5], within_constraint=False),
        trial(1, "succeeded", [30.25]),
    ]
    trials[0]["metrics"] = {"val_accuracy": 0.8834}
    trials[1]["metrics"] = {"val_accuracy": 0.9012}
    constraint = {"val_accuracy": {"min": 0.9, "max": None}}
    shown = sweep(trials, [SECONDS], constraint=constraint, best=trials[1])
    assert objective_text(shown) == "minimize train_seconds where val_accuracy >= 0.9"
    header, *rows = leaderboard(shown)
    assert header.split()[3:5] == ["TRAIN_SECONDS", "VAL_ACCURACY"]
    assert rows[0].split()[:5] == ["1", "1", "succeeded", "30.25s", "0.9012"]
    assert rows[1].split()[:7] == [
        "-",
        "0",
        "succeeded",
        "(outside",
        "constraint)",
        "12.50s",
        "0.8834",
    ]


def test_two_objectives_mark_the_pareto_front_and_rank_it_first() -> None:
    trials = [
        trial(0, "succeeded", [0.95, 40.0]),
        trial(1, "succeeded", [0.90, 10.0]),
        trial(2, "succeeded", [0.96, 35.0]),
    ]
    shown = sweep(trials, [ACCURACY, SECONDS], pareto=[trials[1], trials[2]])
    lines = leaderboard(shown)
    assert [line.split()[0] for line in lines[1:4]] == ["1*", "2*", "3"]
    assert lines[1].split()[1] == "2"  # the front by the first objective
    assert lines[-1] == "* on the Pareto front"
    assert "Pareto front: trials 1, 2" in progress_line(shown)


def test_progress_line_counts_trials_in_flight_pruned_and_failed() -> None:
    trials = [
        trial(0, "succeeded", [0.9], stop_reason="pruned"),
        trial(1, "failed", None),
        trial(2, "running", None),
        trial(3, "queued", None),
    ]
    line = progress_line(sweep(trials, [ACCURACY], best=trials[0]))
    assert line == (
        "swp_1 running: 2/6 trials ended (1 queued, 1 running, 1 pruned, 1 failed); "
        "best trial 0 (job_0000): val_accuracy=0.9000"
    )


def test_summary_without_trials_says_so() -> None:
    lines = sweep_summary(sweep([], [ACCURACY]))
    assert lines[-1] == "best       no best trial yet"
    assert "trials     0 of at most 6" in lines


def test_short_names_keep_the_full_path_where_two_end_alike() -> None:
    names = short_names(["training.lr", "model.dropout", "training.dropout"])
    assert names == {
        "training.lr": "lr",
        "model.dropout": "model.dropout",
        "training.dropout": "training.dropout",
    }
