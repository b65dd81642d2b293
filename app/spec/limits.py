"""The bounds an operator configures (``Limits``), checked by ``check_limits`` once a spec has
parsed: static bounds live on the fields, these depend on the deployment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taas.app.spec.base import StrictModel
from taas.app.spec.datasets import BUILTIN_DATASETS, DatasetInfo, dataset_info
from taas.app.spec.job import JobSpec
from taas.app.spec.networks import (
    CnnSpec,
    NetworkDoesNotFit,
    ResnetSpec,
    cnn_feature_shape,
    parameter_count,
    resnet_feature_size,
)
from taas.app.spec.suggestions import did_you_mean


class Limits(StrictModel):
    """Operator-configured bounds, so that no spec can exhaust a worker."""

    max_epochs: int = 200
    max_batch_size: int = 4096
    max_width: int = 4096
    max_parameters: int = 50_000_000
    max_seconds: float = 24 * 3600.0
    max_synthetic_samples: int = 200_000
    max_synthetic_bytes: int = 1024**3


class LimitViolation(ValueError):
    """A spec that parsed but breaks a configured limit; ``errors`` use FastAPI's error shape."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(error["msg"]) for error in errors))
        self.errors = errors


@dataclass(frozen=True)
class ConfiguredMaximum:
    """A number of the spec bounded by a configured limit. The same table checks a spec and
    writes the bounds into the OpenAPI document, so the schema says what the server enforces."""

    schema: str  # the OpenAPI component that has the field
    part: str  # where that component sits in a spec
    arch: str | None  # for a network's field: the architecture that has it
    field: str
    limit: str  # the ``Limits`` attribute

    def maximum(self, limits: Limits) -> int | float:
        value: int | float = getattr(limits, self.limit)
        return value


CONFIGURED_MAXIMA = (
    ConfiguredMaximum("TrainingSpec", "training", None, "epochs", "max_epochs"),
    ConfiguredMaximum("TrainingSpec", "training", None, "batch_size", "max_batch_size"),
    ConfiguredMaximum("TrainingSpec", "training", None, "max_seconds", "max_seconds"),
    ConfiguredMaximum("MlpSpec", "model", "mlp", "hidden_sizes", "max_width"),
    ConfiguredMaximum("CnnSpec", "model", "cnn", "channels", "max_width"),
    ConfiguredMaximum("CnnSpec", "model", "cnn", "hidden_size", "max_width"),
    ConfiguredMaximum("ResnetSpec", "model", "resnet", "widths", "max_width"),
)


def maximum_errors(spec: Mapping[str, Any], limits: Limits) -> list[dict[str, Any]]:
    """Every configured maximum the spec's numbers exceed. ``spec`` may be a parsed spec's dump
    or the body as sent, which may not parse as a whole: a form with two bad fields hears of
    both, whichever of them the schema itself refuses."""
    errors = []
    for bound in CONFIGURED_MAXIMA:
        section = spec.get(bound.part)
        if not isinstance(section, Mapping) or bound.field not in section:
            continue
        if bound.arch is not None and section.get("arch") != bound.arch:
            continue
        maximum = bound.maximum(limits)
        value = section[bound.field]
        numbered = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, number in numbered:
            if _is_number(number) and number > maximum:
                loc = (bound.part, bound.field) + (() if index is None else (index,))
                errors.append(_violation(loc, f"at most {_plain(maximum)}", number))
    return errors


def maxima_beside(
    spec: Mapping[str, Any], limits: Limits, prefix: list[str], flagged: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``maximum_errors`` of a spec that failed validation (``flagged``: its errors), located
    under ``prefix`` (where the spec sits in the request), for the fields not flagged already."""
    flagged_locs = {tuple(item["loc"]) for item in flagged}
    errors = []
    for error in maximum_errors(spec, limits):
        error["loc"] = [*prefix, *error["loc"][1:]]
        if tuple(error["loc"]) not in flagged_locs:
            errors.append(error)
    return errors


def add_maxima_to_schema(document: dict[str, Any], limits: Limits) -> None:
    """Write the configured maxima into an OpenAPI document's spec components."""
    schemas = document.get("components", {}).get("schemas", {})
    for bound in CONFIGURED_MAXIMA:
        field = schemas.get(bound.schema, {}).get("properties", {}).get(bound.field)
        if field is None:
            continue
        numeric = field.get("items", field)
        for member in numeric.get("anyOf", [numeric]):
            if member.get("type") in ("integer", "number"):
                member["maximum"] = bound.maximum(limits)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plain(number: int | float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _violation(loc: tuple[str | int, ...], message: str, value: object) -> dict[str, Any]:
    field = ".".join(str(part) for part in loc)
    return {"loc": ["body", *loc], "msg": f"{field}={value!r}: {message}", "type": "limit"}


def limit_errors(
    spec: JobSpec, limits: Limits, info: DatasetInfo | None = None
) -> list[dict[str, Any]]:
    """Every configured limit the spec breaks (or a network that cannot fit the dataset's input),
    each naming its field and value. ``info`` describes an uploaded dataset the spec names by id;
    built-ins describe themselves."""
    errors: list[dict[str, Any]] = []
    errors.extend(maximum_errors(spec.model_dump(), limits))
    errors.extend(_recipe_errors(spec))
    errors.extend(_dataset_errors(spec, limits, info))
    if not errors:
        errors.extend(_network_errors(spec, limits, info or dataset_info(spec)))
    return errors


def _recipe_errors(spec: JobSpec) -> list[dict[str, Any]]:
    """Combinations PyTorch would refuse only once the job is running."""
    training, errors = spec.training, []
    if training.nesterov and (training.optimizer != "sgd" or training.momentum == 0):
        message = "nesterov needs optimizer 'sgd' with momentum > 0"
        errors.append(_violation(("training", "nesterov"), message, training.nesterov))
    uses_batch_norm = isinstance(spec.model, ResnetSpec) or spec.model.batch_norm
    if uses_batch_norm and training.batch_size < 2:
        message = "batch_norm needs at least 2 samples per batch"
        errors.append(_violation(("training", "batch_size"), message, training.batch_size))
    return errors


def _network_errors(spec: JobSpec, limits: Limits, info: DatasetInfo) -> list[dict[str, Any]]:
    """What only the dataset's input shape tells: whether the network fits it, and its size."""
    model = spec.model
    translate = spec.training.augment.translate
    if translate and min(info.shape[1:]) <= 2 * translate:
        message = f"shifts of {translate} pixels need larger images than {list(info.shape)}"
        return [_violation(("training", "augment", "translate"), message, translate)]
    try:
        if isinstance(model, CnnSpec):
            cnn_feature_shape(model, info.shape)
        elif isinstance(model, ResnetSpec):
            resnet_feature_size(model, info.shape)
    except NetworkDoesNotFit as error:
        field = "channels" if isinstance(model, CnnSpec) else "widths"
        return [_violation(("model", field), str(error), list(getattr(model, field)))]
    count = parameter_count(model, info.shape, info.num_classes)
    if count > limits.max_parameters:
        message = f"the network would have {count} parameters, at most {limits.max_parameters}"
        return [_violation(("model",), message, model.arch)]
    return []


def _dataset_errors(
    spec: JobSpec, limits: Limits, info: DatasetInfo | None
) -> list[dict[str, Any]]:
    if spec.dataset not in BUILTIN_DATASETS and info is None:
        message = (
            f"unknown dataset: neither a built-in ({', '.join(BUILTIN_DATASETS)}) "
            "nor the id of one of your datasets"
        ) + did_you_mean(spec.dataset, list(BUILTIN_DATASETS))
        return [_violation(("dataset",), message, spec.dataset)]
    if spec.dataset_options is not None and spec.dataset != "synthetic":
        message = "options are only accepted for the 'synthetic' dataset"
        return [_violation(("dataset_options",), message, spec.dataset)]
    options = spec.dataset_options
    if options is None:
        return []
    errors = []
    total = options.train_size + options.test_size
    if total > limits.max_synthetic_samples:
        message = f"train_size + test_size = {total}, at most {limits.max_synthetic_samples}"
        errors.append(_violation(("dataset_options", "train_size"), message, options.train_size))
    channels, height, width = options.shape
    if channels > 4 or height > 256 or width > 256 or min(height, width) < 8:
        message = "channels must be 1-4 and height/width 8-256"
        errors.append(_violation(("dataset_options", "shape"), message, list(options.shape)))
    elif total * channels * height * width > limits.max_synthetic_bytes:
        # The worker holds the whole set in memory as uint8: bound its bytes, not only its count.
        message = (
            f"{total} images of {channels}x{height}x{width} exceed {limits.max_synthetic_bytes}"
        )
        errors.append(_violation(("dataset_options", "shape"), message, list(options.shape)))
    return errors


def check_limits(spec: JobSpec, limits: Limits, info: DatasetInfo | None = None) -> None:
    """Raise ``LimitViolation`` naming every field that breaks a configured limit."""
    errors = limit_errors(spec, limits, info)
    if errors:
        raise LimitViolation(errors)
