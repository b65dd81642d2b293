"""How much memory a job needs at its peak, from the spec and the dataset's shape alone.

Pure arithmetic (no torch), so the API checks a spec at submit against the largest worker the
settings allow, and the worker checks it again at claim against its own free memory. The
estimate counts what the trainer (worker/trainer/loop.py) holds at once:

- the parameters, their gradients, the optimizer's state (adam/adamw: 2 per parameter, sgd with
  momentum and rmsprop: 1), the EMA copy, the best model kept under ``max_seconds``, and one
  more copy for checkpoint and model serialization;
- the activations saved for the backward pass at the batch size (each layer's output, BatchNorm's
  input, max-pool indices), half as many bytes under bf16 autocast, plus the backward pass's
  gradient buffers for the largest layer; or the evaluation batches, if they need more;
- the dataset, train and test split, as stored (uint8 or float32) with int64 labels, twice (the
  split copies it; on a GPU one copy is on the device);
- a fixed framework overhead (the CPython + PyTorch process, or the CUDA context).

It is calibrated against measured peaks (``scripts/memory_estimate.py`` prints both) to err on
the high side: a job it admits fits, one it refuses would have needed most of that memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from taas.app.spec import (
    CnnSpec,
    DatasetInfo,
    JobSpec,
    LimitViolation,
    MlpSpec,
    NetworkSpec,
    ResnetSpec,
    cnn_feature_shape,
    parameter_count,
    resnet_blocks,
)

DeviceKind = Literal["cpu", "cuda"]
GIB = 1024**3
MIB = 1024**2

# The trainer's evaluation batch sizes (worker/trainer/evaluation.py): validation during training
# on the device, and the final test evaluation in fp32 on the CPU.
FAST_EVAL_BATCH = {"cpu": 2000, "cuda": 8192}
FINAL_EVAL_BATCH = 1000
# A Python process with PyTorch loaded and one small network trained (measured RSS: 0.6-0.7 GiB),
# and on a GPU the CUDA context, cuDNN/cuBLAS workspaces and allocator slack.
FRAMEWORK_BYTES: dict[DeviceKind, int] = {"cpu": 768 * MIB, "cuda": 1536 * MIB}
# Measured peak over counted activation bytes: convolution workspaces, autograd temporaries and
# allocator fragmentation the layer-by-layer count does not see.
ACTIVATION_SLACK = 1.25
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 1, "rmsprop": 1}
# Activations whose backward needs their input, so the layer output before them is kept too
# (relu, tanh, sigmoid and elu keep only their own output).
INPUT_SAVING_ACTIVATIONS = frozenset({"gelu", "silu", "leaky_relu"})


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of one job on one device, by what holds them."""

    device: DeviceKind
    parameters: int  # weights, gradients, optimizer state, EMA and serialization copies
    data: int  # the dataset as the trainer holds it
    framework: int  # the process (or CUDA context) before any of the above
    batch_size: int
    per_sample: int  # a training step's working memory per sample of its batch
    evaluation: int  # an evaluation's working memory (its batch size is fixed)

    @property
    def activations(self) -> int:
        return max(self.batch_size * self.per_sample, self.evaluation)

    @property
    def total(self) -> int:
        return self.parameters + self.activations + self.data + self.framework

    def describe(self) -> str:
        return (
            f"about {format_bytes(self.total)} of {self.device} memory at its peak "
            f"(activations at batch {self.batch_size}: {format_bytes(self.activations)}, "
            f"weights, gradients and optimizer: {format_bytes(self.parameters)}, dataset: "
            f"{format_bytes(self.data)}, framework: {format_bytes(self.framework)})"
        )

    def advice(self, budget: int) -> str:
        """What to lower so that the job fits in ``budget`` bytes."""
        room = budget - self.parameters - self.data - self.framework
        if self.data > max(self.parameters, self.activations):
            return "use a smaller dataset (fewer or smaller samples)"
        if self.parameters > self.activations:
            return (
                "use a smaller model (narrower layers, a smaller hidden_size, fewer layers), or "
                "optimizer 'sgd', which keeps one state per weight where adam keeps two"
            )
        if self.evaluation > room:
            return (
                "use a narrower model (fewer channels or widths, more pooling): evaluating it "
                f"alone needs {format_bytes(self.evaluation)}, whatever the batch size"
            )
        fitting = room // self.per_sample
        if fitting >= 2:
            return (
                f"lower training.batch_size to at most {fitting} "
                f"(about {format_bytes(self.per_sample)} per sample), or use a narrower model"
            )
        return "use a narrower model (fewer channels or widths, more pooling)"


def check_fits_largest_worker(
    spec: JobSpec, info: DatasetInfo, *, cpu_bytes: int, gpu_bytes: int, auto_device: DeviceKind
) -> None:
    """Raise ``LimitViolation`` when the job's estimated peak exceeds the largest worker that
    may run it: ``cpu_bytes`` for a CPU job, ``gpu_bytes`` for a CUDA one (``auto_device`` is
    where ``device: auto`` jobs go). bf16 autocast is assumed only where the spec asks for it,
    so the estimate errs high."""
    device: DeviceKind = auto_device if spec.device == "auto" else spec.device
    requested = spec.acceleration
    amp = not isinstance(requested, str) and bool(requested.amp)
    estimate = estimate_memory(spec, info, device=device, amp=amp)
    limit = gpu_bytes if device == "cuda" else cpu_bytes
    if estimate.total <= limit:
        return
    setting = "TAAS_MAX_GPU_MEMORY_BYTES" if device == "cuda" else "TAAS_MAX_WORKER_MEMORY_BYTES"
    message = (
        f"the job would need {estimate.describe()}, more than the largest {device} worker "
        f"has ({format_bytes(limit)}, {setting}): {estimate.advice(limit)}"
    )
    raise LimitViolation([_memory_violation(estimate, spec, message)])


def _memory_violation(estimate: MemoryEstimate, spec: JobSpec, message: str) -> dict[str, Any]:
    """The error in FastAPI's shape, at the field most worth lowering."""
    if estimate.data > max(estimate.parameters, estimate.activations):
        loc: tuple[str, ...] = ("dataset",)
    elif estimate.batch_size * estimate.per_sample >= max(estimate.evaluation, estimate.parameters):
        loc = ("training", "batch_size")
    else:
        loc = ("model",)
    value = spec.training.batch_size if loc[-1] == "batch_size" else getattr(spec, loc[0])
    if loc == ("model",):
        value = spec.model.arch
    field = ".".join(loc)
    return {"loc": ["body", *loc], "msg": f"{field}={value!r}: {message}", "type": "memory"}


def format_bytes(count: int) -> str:
    if count >= GIB:
        return f"{count / GIB:.1f} GiB"
    return f"{count / MIB:.0f} MiB"


def estimate_memory(
    spec: JobSpec,
    info: DatasetInfo,
    *,
    device: DeviceKind,
    amp: bool = False,
) -> MemoryEstimate:
    """Peak memory of ``spec`` on the dataset ``info`` describes.

    On ``cuda`` it is the GPU's share (the dataset held there once, the CUDA context); on ``cpu``
    the whole process. ``amp``: bf16 autocast, which halves most activations.
    """
    count = parameter_count(spec.model, info.shape, info.num_classes)
    saved, largest = activation_elements(spec.model, info.shape, info.num_classes)
    pixels = info.shape[0] * info.shape[1] * info.shape[2]
    value_bytes = 2 if amp else 4
    # Saved outputs, the normalized input (and its bf16 copy), and the backward pass's gradient
    # of the largest layer, in fp32.
    per_sample = saved * value_bytes + pixels * (4 + value_bytes) + largest * 4
    return MemoryEstimate(
        device=device,
        parameters=_parameter_bytes(spec, count, amp),
        data=_data_bytes(info, device),
        framework=FRAMEWORK_BYTES[device],
        batch_size=spec.training.batch_size,
        per_sample=round(ACTIVATION_SLACK * per_sample),
        evaluation=round(ACTIVATION_SLACK * _evaluation_bytes(info, pixels, largest, device, amp)),
    )


def _parameter_bytes(spec: JobSpec, count: int, amp: bool) -> int:
    training = spec.training
    states = OPTIMIZER_STATES[training.optimizer]
    if training.optimizer == "sgd" and training.momentum == 0:
        states = 0
    copies = 1 + 1 + states + 1  # weights, gradients, optimizer state, serialization
    copies += 1 if training.ema_decay is not None else 0
    copies += 1 if training.max_seconds is not None else 0  # the best weights seen
    half_copy = 2 * count if amp else 0  # autocast's bf16 copy of the weights
    return 4 * count * copies + half_copy


def _evaluation_bytes(
    info: DatasetInfo, pixels: int, largest: int, device: DeviceKind, amp: bool
) -> int:
    """Evaluation keeps nothing for backward: the input and about one and a half layer outputs
    at a time, at the evaluation batch size (never more than the split it evaluates)."""
    live = 2 * pixels + 3 * largest // 2
    split = max(info.train_size, info.test_size)
    fast = min(FAST_EVAL_BATCH[device], split) * live * (2 if amp else 4)
    final = min(FINAL_EVAL_BATCH, info.test_size or split) * live * 4
    return max(fast, final)


def _data_bytes(info: DatasetInfo, device: DeviceKind) -> int:
    samples = info.train_size + info.test_size
    pixels = info.shape[0] * info.shape[1] * info.shape[2]
    stored = samples * (pixels * info.value_bytes + 8)  # values + int64 labels
    # On a CPU the loaded set and the trainer's split of it; on a GPU one copy on the device.
    return stored if device == "cuda" else 2 * stored


def activation_elements(
    model: NetworkSpec, shape: tuple[int, int, int], classes: int
) -> tuple[int, int]:
    """(values a training step saves for backward per sample, largest layer output per sample),
    counted layer by layer as worker/trainer/networks.py builds the network. Max-pool indices
    (int64) count as two values."""
    if isinstance(model, MlpSpec):
        return _mlp_elements(model, classes)
    if isinstance(model, CnnSpec):
        return _cnn_elements(model, shape, classes)
    return _resnet_elements(model, shape, classes)


def _mlp_elements(model: MlpSpec, classes: int) -> tuple[int, int]:
    # Per hidden layer: the activation's output, (BatchNorm's input), (the linear output, for an
    # activation that keeps its input), (dropout's mask and output).
    per_unit = 1 + _extra_saves(model.activation, model.batch_norm, model.dropout)
    saved = sum(per_unit * size for size in model.hidden_sizes) + 2 * classes
    return saved, max([*model.hidden_sizes, classes])


def _cnn_elements(model: CnnSpec, shape: tuple[int, int, int], classes: int) -> tuple[int, int]:
    saved, largest = 0, 0
    height, width = shape[1], shape[2]
    # The conv output (or the activation's, which a pool or the next conv keeps), (BatchNorm's
    # input), (the activation's input, for one that keeps it).
    per_conv = 1 + _extra_saves(model.activation, model.batch_norm, 0.0)
    for index, channels in enumerate(model.channels, start=1):
        if model.padding == "valid":
            height, width = height - 2, width - 2
        values = channels * height * width
        saved += per_conv * values
        largest = max(largest, values)
        if index % model.pool_every == 0:
            height, width = height // 2, width // 2
            # The pool's output, and for max-pooling its int64 indices.
            saved += channels * height * width * (3 if model.pooling == "max" else 1)
    channels, height, width = cnn_feature_shape(model, shape)
    features = channels * height * width
    dropout = 2 if model.dropout > 0 else 0
    saved += features * dropout + model.hidden_size * (2 + dropout) + 2 * classes
    return saved, max(largest, features, model.hidden_size, classes)


def _extra_saves(activation: str, batch_norm: bool, dropout: float) -> int:
    """Layer-sized tensors kept beside the activation's output."""
    extra = 1 if batch_norm else 0
    extra += 1 if activation in INPUT_SAVING_ACTIVATIONS else 0
    return extra + (2 if dropout > 0 else 0)


def _resnet_elements(
    model: ResnetSpec, shape: tuple[int, int, int], classes: int
) -> tuple[int, int]:
    height, width = shape[1], shape[2]
    stem = model.widths[0] * height * width
    act = 1 if model.activation in INPUT_SAVING_ACTIVATIONS else 0
    saved, largest = (2 + act) * stem, stem  # conv output (BatchNorm's input), activation
    for fan_in, channels, stride in resnet_blocks(model):
        if stride == 2:
            height, width = (height + 1) // 2, (width + 1) // 2
        values = channels * height * width
        # Kept for backward: both conv outputs (BatchNorm's inputs), the inner activation (the
        # second conv's input), the block's output; a projection's conv output; with an
        # activation that keeps its input, the BatchNorm output and the sum too.
        projects = fan_in != channels or stride != 1
        saved += values * (5 + (1 if projects else 0) + 2 * act)
        largest = max(largest, values)
    dropout = 2 if model.dropout > 0 else 0
    saved += model.widths[-1] * (1 + dropout) + 2 * classes
    return saved, largest
