"""The networks a spec describes, built so their sizes match ``app.spec.parameter_count`` exactly.

Each is an ``nn.Sequential`` (the resnet's blocks are small modules inside one): its state_dict
keys ("0.weight", "3.residual.1.bias", ...) depend only on the spec, so a model.json and its
weights are enough to rebuild it. No forward pass branches on data, so the networks run under
torch.compile, channels_last and bf16 autocast unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from taas.app.spec import (
    Activation,
    CnnSpec,
    MlpSpec,
    NetworkSpec,
    ResnetSpec,
    cnn_feature_shape,
    resnet_block_projects,
    resnet_blocks,
    resnet_feature_size,
)

ACTIVATIONS: dict[Activation, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


# Activations that never decrease: max-pooling commutes with them, max(f(a), f(b)) = f(max(a, b)).
MONOTONIC_ACTIVATIONS: frozenset[Activation] = frozenset(
    {"relu", "leaky_relu", "elu", "tanh", "sigmoid"}
)


def build_network(
    model: NetworkSpec,
    shape: tuple[int, int, int],
    num_classes: int,
    *,
    pool_first: bool = False,
) -> nn.Module:
    """A freshly initialized network for (C, H, W) inputs; torch.manual_seed fixes its weights.

    ``pool_first`` builds a cnn whose max-pools come before their activation where
    ``can_pool_first`` allows: the same function with the same state_dict keys, computed on a
    quarter of the values. Raises ``app.spec.NetworkDoesNotFit`` when a cnn or resnet would
    shrink the input to nothing.
    """
    if isinstance(model, MlpSpec):
        return build_mlp(model, shape, num_classes)
    if isinstance(model, CnnSpec):
        pool_first = pool_first and can_pool_first(model)
        return build_cnn(model, shape, num_classes, pool_first=pool_first)
    return build_resnet(model, shape, num_classes)


def build_mlp(spec: MlpSpec, shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """Flatten -> [Linear -> (BatchNorm1d) -> act -> (Dropout)] per hidden size -> Linear."""
    channels, height, width = shape
    layers: list[nn.Module] = [nn.Flatten()]  # (B, C, H, W) -> (B, C*H*W)
    fan_in = channels * height * width
    for size in spec.hidden_sizes:
        layers.append(nn.Linear(fan_in, size))
        if spec.batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.extend(_activation_and_dropout(spec.activation, spec.dropout))
        fan_in = size
    layers.append(nn.Linear(fan_in, num_classes))  # (B, num_classes) logits
    return nn.Sequential(*layers)


def can_pool_first(spec: NetworkSpec) -> bool:
    """Whether the cnn has max-pools that may swap places with the activation before them."""
    return (
        isinstance(spec, CnnSpec)
        and spec.pooling == "max"
        and spec.activation in MONOTONIC_ACTIVATIONS
        and spec.pool_every <= len(spec.channels)
    )


def build_cnn(
    spec: CnnSpec, shape: tuple[int, int, int], num_classes: int, *, pool_first: bool = False
) -> nn.Sequential:
    """[Conv3x3 -> (BatchNorm2d) -> act, a 2x2 pool after every ``pool_every``-th]* -> Flatten ->
    (Dropout) -> (Linear -> act -> (Dropout)) -> Linear.

    With ``pool_first`` (only valid where ``can_pool_first``) each pool goes before its
    activation instead; neither has parameters, so the state_dict keys stay the same.
    """
    out_channels, out_height, out_width = cnn_feature_shape(spec, shape)  # NetworkDoesNotFit
    pool = nn.MaxPool2d if spec.pooling == "max" else nn.AvgPool2d
    padding = 1 if spec.padding == "same" else 0  # "valid" loses a pixel on each side
    layers: list[nn.Module] = []
    fan_in = shape[0]
    for index, out in enumerate(spec.channels, start=1):
        # (B, fan_in, h, w) -> (B, out, h, w), or (h - 2, w - 2) when "valid".
        # BatchNorm's shift replaces the conv bias, so the conv has none.
        layers.append(nn.Conv2d(fan_in, out, 3, padding=padding, bias=not spec.batch_norm))
        if spec.batch_norm:
            layers.append(nn.BatchNorm2d(out))
        stage_end = [ACTIVATIONS[spec.activation]()]
        if index % spec.pool_every == 0:
            stage_end.append(pool(2))  # (h, w) -> (h // 2, w // 2)
            if pool_first:
                stage_end.reverse()
        layers.extend(stage_end)
        fan_in = out
    layers.append(nn.Flatten())  # (B, out_channels * out_height * out_width)
    if spec.dropout > 0:
        layers.append(nn.Dropout(spec.dropout))
    fan_in = out_channels * out_height * out_width
    if spec.hidden_size:
        layers.append(nn.Linear(fan_in, spec.hidden_size))
        layers.extend(_activation_and_dropout(spec.activation, spec.dropout))
        fan_in = spec.hidden_size
    layers.append(nn.Linear(fan_in, num_classes))  # (B, num_classes) logits
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """act(conv3x3(stride) -> BN -> act -> conv3x3 -> BN  +  shortcut), the shortcut being the
    identity or, when channels or resolution change, a 1x1 conv(stride) -> BN."""

    def __init__(self, fan_in: int, width: int, stride: int, activation: Activation) -> None:
        super().__init__()
        last_norm = nn.BatchNorm2d(width)
        # Each block starts as its shortcut: a zero gamma silences the residual branch at first,
        # which speeds up early training (Goyal et al. 2017, "zero-init residual").
        nn.init.zeros_(last_norm.weight)
        self.residual = nn.Sequential(
            nn.Conv2d(fan_in, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            ACTIVATIONS[activation](),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            last_norm,
        )
        self.shortcut: nn.Module = nn.Identity()
        if resnet_block_projects(fan_in, width, stride):
            self.shortcut = nn.Sequential(
                nn.Conv2d(fan_in, width, 1, stride=stride, bias=False),
                nn.BatchNorm2d(width),
            )
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, fan_in, h, w) -> (B, width, ceil(h / stride), ceil(w / stride))
        out: torch.Tensor = self.activation(self.residual(x) + self.shortcut(x))
        return out


def build_resnet(spec: ResnetSpec, shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """Stem conv3x3 -> BN -> act, the basic blocks of every stage (each stage after the first
    halves the resolution), global average pool -> Flatten -> (Dropout) -> Linear."""
    resnet_feature_size(spec, shape)  # NetworkDoesNotFit if the stages shrink it below 2x2
    stem = spec.widths[0]
    layers: list[nn.Module] = [
        nn.Conv2d(shape[0], stem, 3, padding=1, bias=False),  # (B, stem, H, W)
        nn.BatchNorm2d(stem),
        ACTIVATIONS[spec.activation](),
    ]
    for fan_in, width, stride in resnet_blocks(spec):
        layers.append(BasicBlock(fan_in, width, stride, spec.activation))
    layers.append(nn.AdaptiveAvgPool2d(1))  # (B, widths[-1], 1, 1)
    layers.append(nn.Flatten())  # (B, widths[-1])
    if spec.dropout > 0:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(spec.widths[-1], num_classes))  # (B, num_classes) logits
    return nn.Sequential(*layers)


class MirrorAveraged(nn.Module):
    """Test-time flip augmentation: the mean of the network's logits for each image and for its
    mirror image (flipped left to right). Only for inference: the weights saved and trained are
    those of ``network`` itself."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.train(network.training)  # in the network's mode, not nn.Module's default (train)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, num_classes); dim -1 is the width.
        logits: torch.Tensor = (self.network(x) + self.network(x.flip(-1))) / 2
        return logits


def for_inference(network: nn.Module, test_time_flip: bool) -> nn.Module:
    """The module that evaluates and predicts: ``network``, or it averaged with mirror images
    when the spec asks for ``training.test_time_flip``."""
    return MirrorAveraged(network) if test_time_flip else network


def _activation_and_dropout(activation: Activation, dropout: float) -> list[nn.Module]:
    layers = [ACTIVATIONS[activation]()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers
