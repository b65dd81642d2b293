"""A sweep's search space and the choice of each trial's parameters.

Pure: no database, HTTP or Celery. A search space maps dotted job-spec paths (``"training.lr"``,
``"model.channels"``) to either a list of values or a numeric range; ``check_space`` proves before
anything runs that every trial will be a valid ``JobSpec``, and ``suggest`` picks the parameters
of trial ``number`` from the trials that have finished, the same way every time.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import ValidationError

from taas.app.core.errors import InvalidInput
from taas.app.spec import JobSpec, Limits
from taas.app.spec.limits import maximum_errors

METHODS = ("grid", "random", "tpe")
MAX_PARAMETERS = 20
MAX_VALUES = 100
# Beyond grid search, every combination of the listed values and range ends is validated up
# to this many (about 50 us each); larger spaces are checked one parameter at a time.
MAX_CHECKED_COMBINATIONS = 2000
_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RANGE_KEYS = frozenset({"min", "max", "scale", "type"})


@dataclass(frozen=True)
class Parameter:
    path: str
    values: tuple[Any, ...] | None = None  # categorical
    low: float | None = None  # range
    high: float | None = None
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class FinishedTrial:
    number: int  # 0-based trial number within the sweep
    params: dict[str, Any]
    values: tuple[float, ...] | None  # objective values; None: failed (or pruned without a value)


# --- Parsing -------------------------------------------------------------------------------------


def parse_parameters(raw: dict[str, Any]) -> list[Parameter]:
    """The search space of a request, sorted by path; raises InvalidInput naming the parameter."""
    loc: list[str | int] = ["body", "parameters"]
    if not isinstance(raw, dict) or not raw:
        raise InvalidInput(loc, "parameters: give at least one parameter to search over")
    if len(raw) > MAX_PARAMETERS:
        message = f"parameters: {len(raw)} parameters, at most {MAX_PARAMETERS}"
        raise InvalidInput(loc, message)
    return [_parse_parameter(path, raw[path]) for path in sorted(raw)]


def _parse_parameter(path: str, raw: Any) -> Parameter:
    loc: list[str | int] = ["body", "parameters", path]
    segments = path.split(".")
    if not all(_SEGMENT.match(segment) for segment in segments):
        message = f"parameter {path!r}: not a dotted spec path such as 'training.lr'"
        raise InvalidInput(loc, message)
    if isinstance(raw, dict) and set(raw) == {"values"}:
        return _parse_values(path, raw["values"])
    if isinstance(raw, dict) and {"min", "max"} <= set(raw) <= _RANGE_KEYS:
        return _parse_range(path, raw)
    message = (
        f"parameter {path!r}: expected {{'values': [...]}} or "
        f"{{'min': a, 'max': b, 'scale': 'linear'|'log', 'type': 'float'|'int'}}, got {raw!r}"
    )
    raise InvalidInput(loc, message)


def _parse_values(path: str, values: Any) -> Parameter:
    loc: list[str | int] = ["body", "parameters", path, "values"]
    if not isinstance(values, list) or not values:
        raise InvalidInput(loc, f"parameter {path!r}: values must be a non-empty list")
    if len(values) > MAX_VALUES:
        message = f"parameter {path!r}: {len(values)} values, at most {MAX_VALUES}"
        raise InvalidInput(loc, message)
    seen: set[str] = set()
    for value in values:
        if _value_key(value) in seen:
            message = f"parameter {path!r}: value {value!r} is listed twice"
            raise InvalidInput(loc, message)
        seen.add(_value_key(value))
    return Parameter(path=path, values=tuple(values))


def _parse_range(path: str, raw: dict[str, Any]) -> Parameter:
    loc: list[str | int] = ["body", "parameters", path]
    scale, kind = raw.get("scale", "linear"), raw.get("type", "float")
    if scale not in ("linear", "log"):
        message = f"parameter {path!r}: scale {scale!r} is not 'linear' or 'log'"
        raise InvalidInput([*loc, "scale"], message)
    if kind not in ("float", "int"):
        message = f"parameter {path!r}: type {kind!r} is not 'float' or 'int'"
        raise InvalidInput([*loc, "type"], message)
    low, high = (_range_end(path, key, raw[key], kind == "int") for key in ("min", "max"))
    if low >= high:
        message = f"parameter {path!r}: min {raw['min']!r} must be less than max {raw['max']!r}"
        raise InvalidInput([*loc, "min"], message)
    if scale == "log" and low <= 0:
        message = f"parameter {path!r}: a log scale needs min > 0, got {raw['min']!r}"
        raise InvalidInput([*loc, "min"], message)
    return Parameter(path=path, low=low, high=high, log=scale == "log", integer=kind == "int")


def _range_end(path: str, key: str, value: Any, integer: bool) -> float:
    loc: list[str | int] = ["body", "parameters", path, key]
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value):
        raise InvalidInput(loc, f"parameter {path!r}: {key} {value!r} is not a finite number")
    if integer and not float(value).is_integer():
        message = f"parameter {path!r}: {key} {value!r} is not an integer (type 'int')"
        raise InvalidInput(loc, message)
    return float(value)


def _value_key(value: Any) -> str:
    """Identity of a JSON value (1 and 1.0 and True stay distinct, as they are in a spec)."""
    return json.dumps(value, sort_keys=True)


# --- Applying and checking -----------------------------------------------------------------------


def apply_params(base_spec: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base_spec`` with each dotted path set, creating the dicts on the way (a
    parent that is not a dict, such as ``"acceleration": "auto"``, is replaced by one)."""
    spec = copy.deepcopy(base_spec)
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node = spec
        for segment in parents:
            if not isinstance(node.get(segment), dict):
                node[segment] = {}
            node = node[segment]
        node[leaf] = copy.deepcopy(value)
    return spec


def grid_size(parameters: list[Parameter]) -> int:
    """The number of trials of a grid search: the product of the values' counts."""
    return math.prod(len(_categorical(parameter)) for parameter in parameters)


def check_space(
    base_spec: dict[str, Any],
    parameters: list[Parameter],
    method: str,
    max_trials: int,
    limits: Limits | None = None,
) -> None:
    """Raise InvalidInput unless every trial the sweep may run makes a valid JobSpec, within
    ``limits`` (the configured maxima) when given.

    Each listed value and both ends of each range are tried alone on ``base_spec`` first (so
    the message names one value), then the combinations: all of them for a grid, and for the
    other methods every combination of values and range ends while there are few enough.
    Errors the base spec has on its own are reported against the parameter being tried; validate
    the base spec first for a clearer message.
    """
    if method not in METHODS:
        message = f"method {method!r} is not one of {', '.join(METHODS)}"
        raise InvalidInput(["body", "method"], message)
    if method == "grid":
        _check_grid(parameters, max_trials)
    for parameter in parameters:
        for value in _corners(parameter):
            _check_combination(base_spec, parameters, {parameter.path: value}, limits)
    corners = [_corners(parameter) for parameter in parameters]
    if method == "grid" or math.prod(len(values) for values in corners) <= MAX_CHECKED_COMBINATIONS:
        for combination in itertools.product(*corners):
            params = {p.path: value for p, value in zip(parameters, combination, strict=True)}
            _check_combination(base_spec, parameters, params, limits)


def _check_grid(parameters: list[Parameter], max_trials: int) -> None:
    for parameter in parameters:
        if parameter.values is None:
            message = (
                f"parameter {parameter.path!r}: grid search needs a list of values, not a range"
            )
            raise InvalidInput(["body", "parameters", parameter.path], message)
    size = grid_size(parameters)
    if size > max_trials:
        counts = " x ".join(str(len(_categorical(p))) for p in parameters)
        message = (
            f"parameters: the grid has {counts} = {size} combinations, max_trials is {max_trials}"
        )
        raise InvalidInput(["body", "parameters"], message)


def _corners(parameter: Parameter) -> tuple[Any, ...]:
    """The values to validate: every listed value, or both ends of a range."""
    if parameter.values is not None:
        return parameter.values
    low, high = _bounds(parameter)
    return (int(low), int(high)) if parameter.integer else (low, high)


def _check_combination(
    base_spec: dict[str, Any],
    parameters: list[Parameter],
    params: dict[str, Any],
    limits: Limits | None,
) -> None:
    spec = apply_params(base_spec, params)
    try:
        JobSpec.model_validate(spec)
    except ValidationError as error:
        raise _explain(spec, parameters, params, error.errors()) from None
    over = maximum_errors(spec, limits) if limits is not None else []
    if over:
        details = [{**item, "loc": tuple(item["loc"][1:])} for item in over]
        raise _explain(spec, parameters, params, details)


def _explain(
    spec: dict[str, Any],
    parameters: list[Parameter],
    params: dict[str, Any],
    details: list[Any],
) -> InvalidInput:
    """The InvalidInput naming the parameter most likely at fault, with pydantic's reason (or
    the configured limit's)."""
    errors = [(_field_path(spec, detail), detail) for detail in details]
    paths = [p.path for p in parameters if p.path in params]
    path = max(paths, key=lambda path: max(_shared(path, field) for field, _ in errors))
    field, detail = max(errors, key=lambda item: _shared(path, item[0]))
    loc: list[str | int] = ["body", "parameters", path]
    # Alone, an unknown key is the parameter's path; in a combination (each value having passed
    # alone) it is a field the other values remove, such as channels on an mlp.
    unknown = detail["type"] == "extra_forbidden" and _is_prefix(field, path.split("."))
    if unknown and len(params) == 1:
        message = f"parameter {path!r}: a job spec has no field {'.'.join(field)!r}"
        return InvalidInput(loc, message)
    if len(params) == 1:
        tried = f"value {params[path]!r}"
    else:
        tried = "the combination " + ", ".join(f"{key}={value!r}" for key, value in params.items())
    where = ".".join(field) or "spec"
    message = f"parameter {path!r}: {tried} makes an invalid spec: {where}: {detail['msg']}"
    return InvalidInput(loc, message)


def _field_path(spec: dict[str, Any], detail: Any) -> list[str]:
    """The error's location as spec keys, without pydantic's union tags (``model.cnn.channels``
    becomes ``model.channels``): a part is kept when it is a key of the data at that point."""
    loc: tuple[str | int, ...] = detail["loc"]
    node: Any = spec
    field: list[str] = []
    for index, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            field.append(str(part))
        elif detail["type"] == "missing" and index == len(loc) - 1:
            field.append(str(part))
    return field


def _shared(path: str, field: list[str]) -> int:
    """How many leading segments a parameter's path and an error's field have in common."""
    count = 0
    for a, b in zip(path.split("."), field, strict=False):
        if a != b:
            break
        count += 1
    return count


def _is_prefix(prefix: list[str], segments: list[str]) -> bool:
    return len(prefix) <= len(segments) and segments[: len(prefix)] == prefix


# --- Suggesting ----------------------------------------------------------------------------------


def suggest(
    method: str,
    parameters: list[Parameter],
    seed: int,
    number: int,
    finished: list[FinishedTrial],
    directions: tuple[str, ...],
) -> dict[str, Any]:
    """The params of trial ``number`` (0-based); the same inputs always give the same params."""
    if method == "grid":
        return _grid_point(parameters, number)
    if method == "random":
        rng = np.random.default_rng([seed, number])
        return {p.path: _draw(p, rng) for p in parameters}
    if method == "tpe":
        return _suggest_tpe(parameters, seed + number, finished, directions)
    raise ValueError(f"unknown search method {method!r}")


def _grid_point(parameters: list[Parameter], number: int) -> dict[str, Any]:
    """The ``number``-th item of ``itertools.product`` over the values, without enumerating:
    the last parameter varies fastest, so ``number`` is read as a mixed-radix integer."""
    size = grid_size(parameters)
    if not 0 <= number < size:
        raise ValueError(f"trial {number} is outside a grid of {size}")
    params: dict[str, Any] = {}
    for parameter in reversed(parameters):
        values = _categorical(parameter)
        number, index = divmod(number, len(values))
        params[parameter.path] = copy.deepcopy(values[index])
    return dict(sorted(params.items()))


def _draw(parameter: Parameter, rng: np.random.Generator) -> Any:
    if parameter.values is not None:
        return copy.deepcopy(parameter.values[int(rng.integers(len(parameter.values)))])
    low, high = _bounds(parameter)
    if parameter.integer and parameter.log:
        # Uniform in log space over [low - 0.5, high + 0.5), then rounded: each integer gets
        # the share of the log axis nearest to it (Optuna's IntDistribution(log=True) does this).
        drawn = math.exp(rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
        return int(min(max(round(drawn), low), high))
    if parameter.integer:
        return int(rng.integers(int(low), int(high), endpoint=True))
    if parameter.log:
        # Clamped: exp(log(high)) can round to just above high.
        return min(max(math.exp(rng.uniform(math.log(low), math.log(high))), low), high)
    return float(rng.uniform(low, high))


def _suggest_tpe(
    parameters: list[Parameter],
    seed: int,
    finished: list[FinishedTrial],
    directions: tuple[str, ...],
) -> dict[str, Any]:
    """Ask Optuna's TPE on a study rebuilt in memory from the finished trials. Categorical
    values go through Optuna as indices, so lists and dicts (``model.channels``) work too."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {p.path: _distribution(p) for p in parameters}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            directions=_study_directions(directions), sampler=optuna.samplers.TPESampler(seed=seed)
        )
        for trial in _optuna_trials(parameters, distributions, finished, len(directions)):
            study.add_trial(trial)
        asked = study.ask(distributions).params
    return {p.path: _from_optuna(p, asked[p.path]) for p in parameters}


def _optuna_trials(
    parameters: list[Parameter],
    distributions: dict[str, BaseDistribution],
    finished: list[FinishedTrial],
    objectives: int,
) -> Iterator[optuna.trial.FrozenTrial]:
    """The finished trials Optuna can use: those whose params all lie in the current space."""
    for trial in sorted(finished, key=lambda trial: trial.number):
        params = _to_optuna(parameters, trial.params)
        if params is None:
            continue
        values = trial.values
        usable = values is not None and len(values) == objectives
        if usable and values is not None and all(math.isfinite(v) for v in values):
            yield optuna.trial.create_trial(
                params=params, distributions=distributions, values=list(values)
            )
        else:
            yield optuna.trial.create_trial(
                params=params, distributions=distributions, state=optuna.trial.TrialState.FAIL
            )


def _study_directions(directions: tuple[str, ...]) -> list[optuna.study.StudyDirection]:
    _check_directions(directions)
    maximize, minimize = optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE
    return [maximize if direction == "maximize" else minimize for direction in directions]


def _check_directions(directions: tuple[str, ...]) -> None:
    if not directions or not set(directions) <= {"maximize", "minimize"}:
        raise ValueError(f"directions must be 'maximize' or 'minimize', got {directions!r}")


def _distribution(parameter: Parameter) -> BaseDistribution:
    if parameter.values is not None:
        return CategoricalDistribution(list(range(len(parameter.values))))
    low, high = _bounds(parameter)
    if parameter.integer:
        return IntDistribution(int(low), int(high), log=parameter.log)
    return FloatDistribution(low, high, log=parameter.log)


def _to_optuna(parameters: list[Parameter], params: dict[str, Any]) -> dict[str, Any] | None:
    """A finished trial's params in Optuna's terms, or None if one is missing or out of space."""
    converted: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.path not in params:
            return None
        value = params[parameter.path]
        if parameter.values is not None:
            index = _index_of(parameter.values, value)
            if index is None:
                return None
            converted[parameter.path] = index
        elif _in_range(parameter, value):
            converted[parameter.path] = int(value) if parameter.integer else float(value)
        else:
            return None
    return converted


def _index_of(values: Iterable[Any], value: Any) -> int | None:
    key = _value_key(value)
    return next((i for i, candidate in enumerate(values) if _value_key(candidate) == key), None)


def _in_range(parameter: Parameter, value: Any) -> bool:
    low, high = _bounds(parameter)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    if parameter.integer and not float(value).is_integer():
        return False
    return low <= value <= high


def _from_optuna(parameter: Parameter, value: Any) -> Any:
    if parameter.values is not None:
        return copy.deepcopy(parameter.values[int(value)])
    return int(value) if parameter.integer else float(value)


def _bounds(parameter: Parameter) -> tuple[float, float]:
    if parameter.low is None or parameter.high is None:
        raise ValueError(f"parameter {parameter.path!r} is a list of values, not a range")
    return parameter.low, parameter.high


def _categorical(parameter: Parameter) -> tuple[Any, ...]:
    if parameter.values is None:
        raise ValueError(f"parameter {parameter.path!r} is a range, not a list of values")
    return parameter.values


# --- Results -------------------------------------------------------------------------------------


def pareto_front(
    points: list[tuple[int, tuple[float, ...]]], directions: tuple[str, ...]
) -> list[int]:
    """Numbers of the points no other point dominates (at least as good on every objective and
    better on one), in the order given."""
    _check_directions(directions)
    signs = [1.0 if direction == "maximize" else -1.0 for direction in directions]
    # Turn every objective into one to maximize.
    scored = [
        (number, [s * v for s, v in zip(signs, values, strict=True)]) for number, values in points
    ]
    return [
        number
        for number, values in scored
        if not any(_dominates(other, values) for _, other in scored)
    ]


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )
