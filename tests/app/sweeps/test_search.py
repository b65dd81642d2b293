"""A sweep's search space: what a request may ask for, and how each trial's params are chosen."""

from __future__ import annotations

import math
from typing import Any

import pytest

from taas.app.core.errors import InvalidInput
from taas.app.spec import JobSpec
from taas.app.sweeps.search import (
    FinishedTrial,
    Parameter,
    apply_params,
    check_space,
    grid_size,
    pareto_front,
    parse_parameters,
    suggest,
)

BASE: dict[str, Any] = {"dataset": "synthetic", "model": {"arch": "cnn"}, "training": {"epochs": 1}}
SPACE: dict[str, Any] = {
    "training.lr": {"min": 1e-4, "max": 1.0, "scale": "log"},
    "training.batch_size": {"min": 16, "max": 256, "type": "int"},
    "model.activation": {"values": ["relu", "gelu", "tanh"]},
    "model.channels": {"values": [[16, 32], [32, 64], [8]]},
}


def _rejection(action: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        action()
    return caught.value


# --- parse_parameters -----------------------------------------------------------------------


def test_parse_sorts_by_path_and_reads_ranges_and_values() -> None:
    parameters = parse_parameters(SPACE)

    assert [p.path for p in parameters] == sorted(SPACE)
    by_path = {p.path: p for p in parameters}
    assert by_path["training.lr"] == Parameter("training.lr", low=1e-4, high=1.0, log=True)
    assert by_path["training.batch_size"].integer
    assert by_path["model.channels"].values == ([16, 32], [32, 64], [8])


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"training.lr": {"value": 1}}, "expected"),
        ({"training.lr": [0.1, 0.2]}, "expected"),
        ({"training.lr": {"min": 0.1}}, "expected"),
        ({"training.lr": {"values": []}}, "non-empty"),
        ({"training.lr": {"values": [0.1, 0.1]}}, "listed twice"),
        ({"training.lr": {"values": list(range(101))}}, "at most 100"),
        ({"training.lr": {"min": 0.5, "max": 0.5}}, "less than max"),
        ({"training.lr": {"min": 0.0, "max": 1.0, "scale": "log"}}, "log scale"),
        ({"training.lr": {"min": 0.1, "max": 1, "scale": "cubic"}}, "cubic"),
        ({"training.epochs": {"min": 1.5, "max": 4, "type": "int"}}, "not an integer"),
        ({"training.lr": {"min": "a", "max": 1}}, "not a finite number"),
        ({"training..lr": {"values": [0.1]}}, "dotted spec path"),
    ],
)
def test_parse_rejects_a_bad_parameter_by_its_path(raw: dict[str, Any], words: str) -> None:
    (path,) = raw
    error = _rejection(lambda: parse_parameters(raw))

    assert error.loc[:3] == ["body", "parameters", path]
    assert path in error.message
    assert words in error.message


def test_parse_rejects_an_empty_or_oversized_space() -> None:
    empty = _rejection(lambda: parse_parameters({}))
    many = _rejection(lambda: parse_parameters({f"a.p{i}": {"values": [1]} for i in range(21)}))

    assert empty.loc == many.loc == ["body", "parameters"]
    assert "at least one" in empty.message
    assert "21 parameters, at most 20" in many.message


# --- apply_params ---------------------------------------------------------------------------


def test_apply_params_sets_paths_on_a_copy_creating_missing_parents() -> None:
    base = {"dataset": "mnist", "training": {"epochs": 2}, "acceleration": "auto"}
    applied = apply_params(
        base,
        {"training.lr": 0.1, "model.activation": "gelu", "acceleration.amp": True},
    )

    assert applied == {
        "dataset": "mnist",
        "training": {"epochs": 2, "lr": 0.1},
        "model": {"activation": "gelu"},
        "acceleration": {"amp": True},
    }
    assert base == {"dataset": "mnist", "training": {"epochs": 2}, "acceleration": "auto"}


def test_apply_params_copies_list_values() -> None:
    channels = [16, 32]
    applied = apply_params({"dataset": "mnist"}, {"model.channels": channels})
    applied["model"]["channels"].append(64)

    assert channels == [16, 32]


# --- check_space ----------------------------------------------------------------------------


def test_check_space_accepts_a_valid_space() -> None:
    check_space(BASE, parse_parameters(SPACE), "tpe", max_trials=20)
    grid = {"training.lr": {"values": [0.1, 0.01]}, "model.arch": {"values": ["mlp", "cnn"]}}
    check_space(BASE, parse_parameters(grid), "grid", max_trials=4)


@pytest.mark.parametrize(
    ("base", "raw", "path", "words"),
    [
        (BASE, {"training.lrr": {"values": [0.1]}}, "training.lrr", "no field 'training.lrr'"),
        (BASE, {"model.cnn.channels": {"values": [[8]]}}, "model.cnn.channels", "no field"),
        (BASE, {"training.lr": {"values": [0.1, 0]}}, "training.lr", "value 0"),
        (BASE, {"training.lr": {"min": 0.5, "max": 20}}, "training.lr", "value 20"),
        (BASE, {"model.arch": {"values": ["cnn", "vit"]}}, "model.arch", "'vit'"),
        (
            {"dataset": "mnist"},
            {"model.activation": {"values": ["gelu"]}},
            "model.activation",
            "discriminator 'arch'",
        ),
        (
            {**BASE, "model": {"arch": "cnn", "channels": [8]}},
            {"model.arch": {"values": ["cnn", "mlp"]}},
            "model.arch",
            "model.channels",
        ),
    ],
)
def test_check_space_names_the_parameter_a_spec_refuses(
    base: dict[str, Any], raw: dict[str, Any], path: str, words: str
) -> None:
    error = _rejection(lambda: check_space(base, parse_parameters(raw), "random", 10))

    assert error.loc == ["body", "parameters", path]
    assert repr(path) in error.message
    assert words in error.message


def test_check_space_catches_a_grid_combination_no_single_value_breaks() -> None:
    # mlp alone is fine, and channels alone are fine on the default cnn; together they are not.
    raw = {"model.arch": {"values": ["cnn", "mlp"]}, "model.channels": {"values": [[8], [16]]}}
    base = {**BASE, "model": {"arch": "cnn"}}

    error = _rejection(lambda: check_space(base, parse_parameters(raw), "grid", 4))

    assert error.loc == ["body", "parameters", "model.channels"]
    assert "model.arch='mlp'" in error.message
    assert "model.channels" in error.message


def test_check_space_refuses_a_grid_over_a_range() -> None:
    error = _rejection(lambda: check_space(BASE, parse_parameters(SPACE), "grid", max_trials=1000))

    assert error.loc == ["body", "parameters", "training.batch_size"]
    assert "grid search needs a list of values" in error.message


def test_check_space_refuses_a_grid_larger_than_max_trials() -> None:
    raw = {
        "training.lr": {"values": [0.1, 0.01, 0.001]},
        "model.activation": {"values": ["relu", "gelu"]},
    }

    error = _rejection(lambda: check_space(BASE, parse_parameters(raw), "grid", max_trials=5))

    assert error.loc == ["body", "parameters"]
    assert "6 combinations" in error.message
    assert "max_trials is 5" in error.message


def test_check_space_refuses_an_unknown_method() -> None:
    error = _rejection(lambda: check_space(BASE, parse_parameters(SPACE), "bayes", 10))

    assert error.loc == ["body", "method"]
    assert "'bayes'" in error.message


# --- suggest --------------------------------------------------------------------------------


def test_grid_enumerates_every_combination_once() -> None:
    raw = {
        "training.lr": {"values": [0.1, 0.01]},
        "model.channels": {"values": [[8], [16, 32]]},
        "training.optimizer": {"values": ["sgd", "adam", "adamw"]},
    }
    parameters = parse_parameters(raw)
    size = grid_size(parameters)

    points = [suggest("grid", parameters, 0, n, [], ("maximize",)) for n in range(size)]

    assert size == 12
    assert len({repr(sorted(point.items())) for point in points}) == 12
    for point in points:
        JobSpec.model_validate(apply_params(BASE, point))
    with pytest.raises(ValueError, match="outside a grid of 12"):
        suggest("grid", parameters, 0, 12, [], ("maximize",))


def _assert_within(parameters: list[Parameter], params: dict[str, Any]) -> None:
    assert set(params) == {p.path for p in parameters}
    for parameter in parameters:
        value = params[parameter.path]
        if parameter.values is not None:
            assert value in parameter.values
        else:
            assert parameter.low is not None
            assert parameter.high is not None
            assert parameter.low <= value <= parameter.high
            assert isinstance(value, int) == parameter.integer


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_sampled_params_are_deterministic_and_within_the_space(method: str) -> None:
    parameters = parse_parameters(SPACE)
    finished = [
        FinishedTrial(n, suggest("random", parameters, 7, n, [], ("maximize",)), (n / 20,))
        for n in range(12)
    ]

    for number in range(12, 20):
        first = suggest(method, parameters, 7, number, finished, ("maximize",))
        again = suggest(method, parameters, 7, number, finished, ("maximize",))
        assert first == again
        _assert_within(parameters, first)
    other_seed = [suggest(method, parameters, 8, n, finished, ("maximize",)) for n in range(12, 20)]
    same_seed = [suggest(method, parameters, 7, n, finished, ("maximize",)) for n in range(12, 20)]
    assert other_seed != same_seed


def test_random_covers_a_log_range_evenly_in_log_space() -> None:
    parameters = [Parameter("training.lr", low=1e-4, high=1.0, log=True)]

    lrs = [
        suggest("random", parameters, 0, n, [], ("maximize",))["training.lr"] for n in range(400)
    ]

    below = sum(lr < 1e-2 for lr in lrs)  # the lower half of the range in log space
    assert 150 < below < 250


def test_tpe_proposes_more_from_the_region_that_did_better() -> None:
    parameters = parse_parameters({"training.lr": {"min": 1e-4, "max": 1.0, "scale": "log"}})
    # Twenty finished trials spread over the range, where a higher lr always scored better.
    finished = []
    for n in range(20):
        lr = 10 ** (-4 + 4 * n / 19)
        finished.append(FinishedTrial(n, {"training.lr": lr}, (math.log10(lr),)))
    finished.append(FinishedTrial(20, {"training.lr": 0.5}, None))  # a failed trial

    lrs = [
        suggest("tpe", parameters, 3, n, finished, ("maximize",))["training.lr"]
        for n in range(21, 51)
    ]

    upper = sum(lr > 1e-2 for lr in lrs)  # uniform in log space would put half of them here
    assert upper >= 24, lrs


def test_tpe_round_trips_list_valued_categoricals() -> None:
    parameters = parse_parameters(
        {
            "model.channels": {"values": [[16, 32], [32, 64]]},
            "acceleration": {"values": ["off", {"amp": True}]},
        }
    )
    finished = [
        FinishedTrial(0, {"model.channels": [16, 32], "acceleration": "off"}, (0.5,)),
        FinishedTrial(1, {"model.channels": [32, 64], "acceleration": {"amp": True}}, (0.9,)),
        FinishedTrial(2, {"model.channels": [8], "acceleration": "off"}, (1.0,)),  # old space
    ]

    seen = [suggest("tpe", parameters, 0, n, finished, ("minimize",)) for n in range(3, 13)]

    for params in seen:
        assert params["model.channels"] in ([16, 32], [32, 64])
        assert params["acceleration"] in ("off", {"amp": True})
        JobSpec.model_validate(apply_params(BASE, params))
    assert {tuple(params["model.channels"]) for params in seen} == {(16, 32), (32, 64)}


def test_tpe_handles_several_objectives() -> None:
    parameters = parse_parameters({"training.lr": {"min": 1e-3, "max": 1.0}})
    finished = [
        FinishedTrial(n, {"training.lr": 0.1 * (n + 1)}, (0.1 * n, 1.0 - 0.1 * n)) for n in range(5)
    ]

    params = suggest("tpe", parameters, 0, 5, finished, ("maximize", "minimize"))

    _assert_within(parameters, params)


# --- pareto_front ---------------------------------------------------------------------------


def test_pareto_front_keeps_the_points_nothing_beats_on_every_objective() -> None:
    # (accuracy to maximize, seconds to minimize)
    points = [
        (0, (0.90, 100.0)),
        (1, (0.92, 300.0)),
        (2, (0.89, 150.0)),  # worse than 0 on both
        (3, (0.95, 900.0)),
        (4, (0.92, 350.0)),  # as accurate as 1, slower
        (5, (0.80, 20.0)),
    ]

    assert pareto_front(points, ("maximize", "minimize")) == [0, 1, 3, 5]
    assert pareto_front(points, ("minimize", "minimize")) == [5]
    assert pareto_front([], ("maximize",)) == []
