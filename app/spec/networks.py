"""The networks a spec may name (``model``), the default one, and the arithmetic on them that
needs no torch: the shape after the convs, the stages of a ResNet, the exact parameter count of
the network ``worker.trainer.networks`` builds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from taas.app.spec.base import StrictModel, Width

Activation = Literal["relu", "gelu", "silu", "tanh", "sigmoid", "elu", "leaky_relu"]


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
