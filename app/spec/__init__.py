"""The job spec: the contract shared by the API, the worker and the trainer.

Pydantic only (no FastAPI, SQLAlchemy or torch): it imports nothing else of taas, so every side
can import it. Every model forbids unknown fields: a typo such as ``"epocs"`` must be an error,
not a silently ignored setting. Static bounds live on the fields; the bounds an operator
configures (``Limits``) are checked by ``check_limits`` once the spec has parsed.

- ``base``: ``StrictModel``, which every model of the spec extends.
- ``networks``: the networks a spec may name, the default one, their shapes and exact sizes.
- ``training``: the training settings, and the default recipe per architecture.
- ``acceleration``: the switches the trainer may turn on to go faster.
- ``datasets``: the built-in and uploaded datasets, the synthetic one's options, ``DatasetInfo``.
- ``job``: ``JobSpec`` itself, and its normalized form.
- ``limits``: the operator's ``Limits`` and ``check_limits``.

Every public name is imported here: the rest of taas imports ``from taas.app.spec``.
"""

from taas.app.spec.acceleration import AccelerationSpec
from taas.app.spec.base import StrictModel, Width
from taas.app.spec.datasets import (
    BUILTIN_DATASETS,
    CIFAR10_CLASSES,
    DATASET_ID_PATTERN,
    FASHION_MNIST_CLASSES,
    DatasetInfo,
    SyntheticOptions,
    dataset_info,
)
from taas.app.spec.job import (
    AUTO_DEVICE_CONTEXT,
    JOB_ID_PATTERN,
    DeviceName,
    ExportFormat,
    JobSpec,
    normalized,
)
from taas.app.spec.limits import Limits, LimitViolation, check_limits, limit_errors
from taas.app.spec.networks import (
    Activation,
    CnnSpec,
    MlpSpec,
    ModelSpec,
    NetworkDoesNotFit,
    NetworkSpec,
    ResnetSpec,
    cnn_feature_shape,
    default_model,
    parameter_count,
    resnet_block_projects,
    resnet_blocks,
    resnet_feature_size,
)
from taas.app.spec.training import (
    ARCH_TRAINING_DEFAULTS,
    Augmentation,
    OptimizerName,
    ScheduleName,
    TrainingSpec,
    with_recipe_defaults,
)

__all__ = [
    "ARCH_TRAINING_DEFAULTS",
    "AUTO_DEVICE_CONTEXT",
    "BUILTIN_DATASETS",
    "CIFAR10_CLASSES",
    "DATASET_ID_PATTERN",
    "FASHION_MNIST_CLASSES",
    "JOB_ID_PATTERN",
    "AccelerationSpec",
    "Activation",
    "Augmentation",
    "CnnSpec",
    "DatasetInfo",
    "DeviceName",
    "ExportFormat",
    "JobSpec",
    "LimitViolation",
    "Limits",
    "MlpSpec",
    "ModelSpec",
    "NetworkDoesNotFit",
    "NetworkSpec",
    "OptimizerName",
    "ResnetSpec",
    "ScheduleName",
    "StrictModel",
    "SyntheticOptions",
    "TrainingSpec",
    "Width",
    "check_limits",
    "cnn_feature_shape",
    "dataset_info",
    "default_model",
    "limit_errors",
    "normalized",
    "parameter_count",
    "resnet_block_projects",
    "resnet_blocks",
    "resnet_feature_size",
    "with_recipe_defaults",
]
