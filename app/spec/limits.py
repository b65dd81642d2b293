"""The bounds an operator configures (``Limits``), checked by ``check_limits`` once a spec has
parsed: static bounds live on the fields, these depend on the deployment."""

from __future__ import annotations

from typing import Any

from taas.app.spec.base import StrictModel
from taas.app.spec.datasets import BUILTIN_DATASETS, DatasetInfo, dataset_info
from taas.app.spec.job import JobSpec
from taas.app.spec.networks import (
    CnnSpec,
    NetworkDoesNotFit,
    NetworkSpec,
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
    training = spec.training
    if training.epochs > limits.max_epochs:
        errors.append(
            _violation(("training", "epochs"), f"at most {limits.max_epochs}", training.epochs)
        )
    if training.batch_size > limits.max_batch_size:
        message = f"at most {limits.max_batch_size}"
        errors.append(_violation(("training", "batch_size"), message, training.batch_size))
    if training.max_seconds is not None and training.max_seconds > limits.max_seconds:
        message = f"at most {limits.max_seconds:g}"
        errors.append(_violation(("training", "max_seconds"), message, training.max_seconds))
    errors.extend(_recipe_errors(spec))
    errors.extend(_width_errors(spec.model, limits))
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


def _width_errors(model: NetworkSpec, limits: Limits) -> list[dict[str, Any]]:
    field = {"mlp": "hidden_sizes", "cnn": "channels", "resnet": "widths"}[model.arch]
    widths: list[int] = getattr(model, field)
    errors = [
        _violation(("model", field, index), f"at most {limits.max_width}", width)
        for index, width in enumerate(widths)
        if width > limits.max_width
    ]
    if isinstance(model, CnnSpec) and model.hidden_size > limits.max_width:
        message = f"at most {limits.max_width}"
        errors.append(_violation(("model", "hidden_size"), message, model.hidden_size))
    return errors


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
