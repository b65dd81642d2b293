"""The job spec: the contract shared by the API, the worker and the trainer.

Pydantic only (no FastAPI, SQLAlchemy or torch), so every side can import it. Every model forbids
unknown fields: a typo such as ``"epocs"`` must be an error, not a silently ignored setting.
Static bounds live on the fields; the bounds an operator configures (``Limits``) are checked by
``check_limits`` once the spec has parsed.
"""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

Activation = Literal["relu", "gelu", "silu", "tanh", "sigmoid", "elu", "leaky_relu"]
OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop"]
ScheduleName = Literal["constant", "step", "cosine", "onecycle"]
ExportFormat = Literal["safetensors", "onnx", "torchscript"]
DeviceName = Literal["auto", "cpu", "cuda"]
BUILTIN_DATASETS: tuple[str, ...] = ("fashion_mnist", "mnist", "cifar10", "synthetic")
# Uploaded datasets are named by their id.
DATASET_ID_PATTERN = re.compile(r"^ds_[0-9a-f]{24}$")
JOB_ID_PATTERN = re.compile(r"^job_[0-9a-f]{24}$")

Width = Annotated[int, Field(ge=1)]


class StrictModel(BaseModel):
    """Base for every spec model: unknown fields, NaN and infinity are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MlpSpec(StrictModel):
    """Fully connected: flatten -> [Linear -> (BatchNorm) -> act -> (Dropout)]* -> Linear."""

    arch: Literal["mlp"] = "mlp"
    hidden_sizes: list[Width] = Field(default_factory=lambda: [128], max_length=16)
    activation: Activation = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    batch_norm: bool = False


class CnnSpec(StrictModel):
    """Small convnet: conv3x3 -> (BatchNorm) -> act for each width in ``channels``, a 2x2 pool
    after every ``pool_every`` convs, then (Dropout) -> (hidden fc -> act -> (Dropout)) -> fc.

    The pytorch/examples MNIST net is ``{"channels": [32, 64], "pool_every": 2,
    "padding": "valid", "hidden_size": 128}``.
    """

    arch: Literal["cnn"] = "cnn"
    channels: list[Width] = Field(default_factory=lambda: [24, 48], min_length=1, max_length=8)
    pool_every: int = Field(default=1, ge=1, le=8)
    pooling: Literal["max", "avg"] = "max"
    padding: Literal["same", "valid"] = "same"
    hidden_size: int = Field(default=128, ge=0, description="0: no hidden fc layer")
    activation: Activation = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    batch_norm: bool = False


class ResnetSpec(StrictModel):
    """Small residual net for 28x28 / 32x32 inputs: a conv3x3 stem, then per width a stage of
    ``blocks_per_stage`` basic blocks (two conv3x3 + BatchNorm, identity or 1x1 shortcut); every
    stage after the first halves the resolution. Global average pool -> (Dropout) -> fc."""

    arch: Literal["resnet"] = "resnet"
    widths: list[Width] = Field(default_factory=lambda: [64, 128, 256], min_length=1, max_length=5)
    blocks_per_stage: int = Field(default=1, ge=1, le=4)
    activation: Activation = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


NetworkSpec = MlpSpec | CnnSpec | ResnetSpec
ModelSpec = Annotated[NetworkSpec, Field(discriminator="arch")]


def default_model(device: Literal["cpu", "cuda"] = "cpu") -> NetworkSpec:
    """The network of a spec that names none, chosen by where the job runs.

    On a CPU: two conv stages (24 and 48 channels) and a 128-unit fc layer. Without BatchNorm: on
    a CPU its backward pass took 40% of a training step of a convnet this size (torch.profiler).
    With the default recipe (batch 128, label smoothing 0.1, AdamW 0.01 one-cycle) it reaches
    91.2-91.5% on Fashion-MNIST in 2 epochs (seeds 0-2) and 91.6-92.0% in the default 3, in 2/3
    of the time the 32-64 channel net took at batch 256.

    On a GPU (the GPU recipe, ``examples/gpu_recipe.json``): the 64-128-256 ResNet with its
    recipe below, which a GPU trains at about 100k samples/s; on an H200 it passed 93% at epoch
    11 of 15 (``benchmarks/results/h200-resnet-sweep-2.log``).
    """
    return ResnetSpec() if device == "cuda" else CnnSpec()


class Augmentation(StrictModel):
    """Per-batch augmentation of training images (never of the evaluation split)."""

    flip: bool = Field(default=False, description="random horizontal flips")
    translate: int = Field(default=0, ge=0, le=8, description="random shifts of up to N pixels")


class TrainingSpec(StrictModel):
    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=256, ge=1)
    optimizer: OptimizerName = "adamw"
    lr: float = Field(default=0.01, gt=0.0, le=10.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    lr_schedule: ScheduleName = "onecycle"
    loss: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0, lt=2**32)
    warmup_epochs: float = Field(default=0.0, ge=0.0, description="linear warmup length")
    grad_clip_norm: float | None = Field(default=None, gt=0.0)
    ema_decay: float | None = Field(default=None, gt=0.0, lt=1.0, description="weight EMA")
    augment: Augmentation = Field(default_factory=Augmentation)
    test_time_flip: bool = Field(
        default=False,
        description="test-time augmentation: every evaluation, export and prediction averages "
        "the logits of an image and of its mirror image (for networks trained with "
        "augment.flip on data whose mirror images are still the same class)",
    )
    evals_per_epoch: int = Field(default=1, ge=1, le=20, description="evaluations per epoch")
    checkpoint_every_epochs: int = Field(default=1, ge=1)
    target_accuracy: float | None = Field(
        default=None, gt=0.0, le=1.0, description="stop once the test accuracy reaches this"
    )
    max_seconds: float | None = Field(
        default=None, gt=0.0, description="stop after this long and keep the best model"
    )
    val_fraction: float = Field(
        default=0.1,
        gt=0.0,
        le=0.5,
        description="share of the training split held out (seeded): as the test split of a "
        "dataset that has none, and for validation when validate_on is 'holdout'",
    )
    validate_on: Literal["test", "holdout"] = Field(
        default="test",
        description="where per-epoch validation metrics come from: the test split, or a holdout "
        "of the training split (the test split is then used only for the final metrics)",
    )


class AccelerationSpec(StrictModel):
    """Explicit switches; ``None`` means "let the trainer decide for this device"."""

    data_on_device: bool | None = Field(default=None, description="uint8 data on the device")
    amp: bool | None = Field(default=None, description="bf16 autocast")
    channels_last: bool | None = None
    pool_first: bool | None = Field(
        default=None, description="max-pool before a non-decreasing activation (cnn)"
    )
    fused_optimizer: bool | None = None
    compile: bool | None = Field(default=None, description="torch.compile (CUDA)")
    cuda_graphs: bool | None = Field(default=None, description="CUDA graphs (with compile)")
    threads: int | None = Field(default=None, ge=1, le=512, description="CPU threads")


class SyntheticOptions(StrictModel):
    """Shape of the generated ``synthetic`` dataset: class prototypes plus noise, seeded."""

    num_classes: int = Field(default=10, ge=2, le=100)
    shape: tuple[Width, Width, Width] = (1, 28, 28)
    train_size: int = Field(default=2000, ge=10)
    test_size: int = Field(default=500, ge=10)
    noise: float = Field(default=0.6, ge=0.0, le=4.0)
    seed: int = Field(default=0, ge=0, lt=2**32)


def _default_exports() -> list[ExportFormat]:
    return ["safetensors"]


# The default recipe per architecture: training fields a spec leaves out are filled from here
# first. The convnet default reaches 91% on Fashion-MNIST in 2 epochs (the default 3 give about
# 92%): smaller batches and label smoothing got there in 2/3 of the time of batch 256 without;
# the ResNet (the GPU default) needs a longer schedule, label smoothing and flips to pass 93%
# (benchmarks/results/h200-resnet-sweep-2.log). Its evaluations also average each image with its
# mirror image, as the fast CIFAR-10 records do: on a CPU convnet trained with flips, that added
# 0.2-0.5 points of test accuracy on Fashion-MNIST.
ARCH_TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "cnn": {"batch_size": 128, "label_smoothing": 0.1},
    "resnet": {
        "epochs": 15,
        "batch_size": 256,
        "lr": 0.003,
        "label_smoothing": 0.1,
        "augment": {"flip": True},
        "test_time_flip": True,
    },
}


class JobSpec(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    dataset: str = Field(min_length=1, max_length=100)
    dataset_options: SyntheticOptions | None = None
    model: ModelSpec = Field(
        default_factory=default_model,
        description="the network; left out: a small convnet on a CPU, or for a job bound for a "
        "GPU the GPU recipe's ResNet (the normalized spec in the answer says which)",
    )
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    acceleration: Literal["off", "auto"] | AccelerationSpec = "auto"
    device: DeviceName = "auto"
    exports: list[ExportFormat] = Field(default_factory=_default_exports, max_length=4)
    priority: int = Field(
        default=0,
        ge=-10,
        le=10,
        description="among this tenant's own queued jobs, a higher priority runs first; "
        "between tenants, the one with the fewest running jobs goes first",
    )

    # The request as given, before any default: a job bound for the GPU queue through
    # ``device: auto`` is validated again from it with the GPU defaults (``for_auto_device``).
    _given: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _fill_recipe_defaults(
        cls, data: Any, handler: ModelWrapValidatorHandler[JobSpec], info: ValidationInfo
    ) -> JobSpec:
        """Fill a left-out model with the default network for where the job runs, and the
        training fields left out with its architecture's recipe."""
        if not isinstance(data, dict):
            return handler(data)
        device = data.get("device", "auto")
        if device == "auto":  # the API passes where `device: auto` jobs go, when it knows
            device = (info.context or {}).get(AUTO_DEVICE_CONTEXT, "cpu")
        spec = handler(with_recipe_defaults(data, "cuda" if device == "cuda" else "cpu"))
        spec._given = copy.deepcopy(data)
        return spec

    def for_auto_device(self, auto_device: Literal["cpu", "cuda"]) -> JobSpec:
        """This spec as it runs where ``device: auto`` jobs go: on a GPU queue a spec that names
        no model gets the GPU recipe, so that the normalized spec a user sees is what runs."""
        given = self._given
        if self.device != "auto" or auto_device == "cpu" or given is None or "model" in given:
            return self
        return JobSpec.model_validate(given, context={AUTO_DEVICE_CONTEXT: auto_device})


# Validation context key: where a ``device: auto`` job runs ("cpu" unless the API says "cuda").
AUTO_DEVICE_CONTEXT = "auto_device"


def with_recipe_defaults(data: dict[str, Any], device: Literal["cpu", "cuda"]) -> dict[str, Any]:
    """``data`` with the default model (when it names none) and its architecture's training
    defaults under the training fields it gives."""
    if "model" not in data:
        data = {**data, "model": default_model(device).model_dump(mode="json")}
    model, training = data["model"], data.get("training", {})
    if not isinstance(model, dict) or not isinstance(training, dict):
        return data  # not a spec: the field validation names the problem
    defaults = ARCH_TRAINING_DEFAULTS.get(str(model.get("arch")))
    if defaults is None:
        return data
    merged = {**copy.deepcopy(defaults), **training}
    if "test_time_flip" not in training and not _trains_on_flips(merged):
        # Mirror images at test time help only a network that saw them in training.
        merged.pop("test_time_flip", None)
    return {**data, "training": merged}


def _trains_on_flips(training: dict[str, Any]) -> bool:
    augment = training.get("augment")
    return isinstance(augment, dict) and augment.get("flip") is True


class DatasetInfo(StrictModel):
    """What the trainer and the API need to know about a dataset before loading it."""

    name: str
    shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    class_names: list[str]
    train_size: int
    test_size: int
    value_bytes: Literal[1, 4] = 1  # per stored value: uint8 images, or float32 values


FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def dataset_info(spec: JobSpec) -> DatasetInfo:
    """Static description of a built-in dataset (for ``synthetic``, of the options in the spec)."""
    if spec.dataset == "synthetic":
        options = spec.dataset_options or SyntheticOptions()
        return DatasetInfo(
            name="synthetic",
            shape=options.shape,
            num_classes=options.num_classes,
            class_names=[f"class_{i}" for i in range(options.num_classes)],
            train_size=options.train_size,
            test_size=options.test_size,
        )
    known = {
        "fashion_mnist": ((1, 28, 28), FASHION_MNIST_CLASSES, 60000, 10000),
        "mnist": ((1, 28, 28), [str(i) for i in range(10)], 60000, 10000),
        "cifar10": ((3, 32, 32), CIFAR10_CLASSES, 50000, 10000),
    }
    if spec.dataset not in known:
        raise ValueError(f"unknown dataset {spec.dataset!r}")
    shape, names, train_size, test_size = known[spec.dataset]
    return DatasetInfo(
        name=spec.dataset,
        shape=shape,
        num_classes=len(names),
        class_names=names,
        train_size=train_size,
        test_size=test_size,
    )


class NetworkDoesNotFit(ValueError):
    """The network would shrink the input to nothing; the message says how to fix it."""


def cnn_feature_shape(model: CnnSpec, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(C, H, W) after the convs and pools of ``model``; raises NetworkDoesNotFit at 0x0."""
    channels, height, width = shape
    for index, out in enumerate(model.channels, start=1):
        if model.padding == "valid":
            height, width = height - 2, width - 2
        if index % model.pool_every == 0:
            height, width = height // 2, width // 2
        channels = out
        if min(height, width) < 1:
            raise NetworkDoesNotFit(
                f"conv {index} of {len(model.channels)} leaves nothing of the {shape[1]}x"
                f"{shape[2]} input: use fewer convs, a larger pool_every or padding 'same'"
            )
    return channels, height, width


def resnet_feature_size(model: ResnetSpec, shape: tuple[int, int, int]) -> tuple[int, int]:
    """(H, W) of the last stage; each stage after the first halves it (stride-2 conv, padded)."""
    height, width = shape[1], shape[2]
    for stage in range(1, len(model.widths)):
        height, width = (height + 1) // 2, (width + 1) // 2
        if min(height, width) < 2:
            raise NetworkDoesNotFit(
                f"stage {stage + 1} of {len(model.widths)} shrinks the {shape[1]}x{shape[2]} "
                "input below 2x2: use fewer widths"
            )
    return height, width


def parameter_count(model: NetworkSpec, shape: tuple[int, int, int], classes: int) -> int:
    """Exact number of trainable parameters of the network ``worker.trainer.networks`` builds."""
    if isinstance(model, MlpSpec):
        return _mlp_parameters(model, shape[0] * shape[1] * shape[2], classes)
    if isinstance(model, CnnSpec):
        return _cnn_parameters(model, shape, classes)
    return _resnet_parameters(model, shape[0], classes)


def _mlp_parameters(model: MlpSpec, fan_in: int, classes: int) -> int:
    count = 0
    for size in model.hidden_sizes:
        count += fan_in * size + size + (2 * size if model.batch_norm else 0)
        fan_in = size
    return count + fan_in * classes + classes


def _cnn_parameters(model: CnnSpec, shape: tuple[int, int, int], classes: int) -> int:
    count, fan_in = 0, shape[0]
    for out in model.channels:
        # A conv followed by BatchNorm has no bias (the norm's shift replaces it).
        bias_or_norm = 2 * out if model.batch_norm else out
        count += fan_in * out * 9 + bias_or_norm
        fan_in = out
    channels, height, width = cnn_feature_shape(model, shape)
    fan_in = channels * height * width
    if model.hidden_size:
        count += fan_in * model.hidden_size + model.hidden_size
        fan_in = model.hidden_size
    return count + fan_in * classes + classes


def resnet_blocks(model: ResnetSpec) -> list[tuple[int, int, int]]:
    """(fan_in, width, stride) of each basic block in order: the first block of every stage after
    the first has stride 2. The stem maps the input to ``widths[0]``, so the first block's fan_in
    is ``widths[0]``."""
    blocks, fan_in = [], model.widths[0]
    for stage, width in enumerate(model.widths):
        for block in range(model.blocks_per_stage):
            blocks.append((fan_in, width, 2 if stage > 0 and block == 0 else 1))
            fan_in = width
    return blocks


def resnet_block_projects(fan_in: int, width: int, stride: int) -> bool:
    """Whether a block needs a 1x1 conv + BatchNorm shortcut: an identity can neither change the
    channel count nor the resolution (a stride-2 block of unchanged width still projects)."""
    return fan_in != width or stride != 1


def _resnet_parameters(model: ResnetSpec, in_channels: int, classes: int) -> int:
    stem = model.widths[0]
    count = in_channels * stem * 9 + 2 * stem  # conv without bias + BatchNorm
    for fan_in, width, stride in resnet_blocks(model):
        # Two conv3x3 without bias, each followed by BatchNorm (weight and bias).
        count += 9 * fan_in * width + 2 * width + 9 * width * width + 2 * width
        if resnet_block_projects(fan_in, width, stride):
            count += fan_in * width + 2 * width
    return count + model.widths[-1] * classes + classes


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
        )
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


def normalized(spec: JobSpec) -> dict[str, Any]:
    """The spec with every default filled in, as stored on the job and sent to workers."""
    data = spec.model_dump(mode="json")
    if data["name"] is None:
        data["name"] = f"{spec.model.arch}-{spec.dataset}"
    if data["dataset_options"] is None and spec.dataset == "synthetic":
        data["dataset_options"] = SyntheticOptions().model_dump(mode="json")
    return data
