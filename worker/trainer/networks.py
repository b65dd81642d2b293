"""The networks a spec describes, built so their sizes match ``app.spec.parameter_count`` exactly.

Both are plain ``nn.Sequential`` stacks: their state_dict keys ("1.weight", ...) depend only on the
spec, so a model.json and its weights are enough to rebuild one.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from app.spec import Activation, CnnSpec, MlpSpec

ACTIVATIONS: dict[Activation, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def build_network(
    model: MlpSpec | CnnSpec, shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    """A freshly initialized network for (C, H, W) inputs; torch.manual_seed fixes its weights."""
    if isinstance(model, MlpSpec):
        return build_mlp(model, shape, num_classes)
    return build_cnn(model, shape, num_classes)


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


def build_cnn(spec: CnnSpec, shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """[Conv3x3 -> (BatchNorm2d) -> act -> MaxPool2]* -> Flatten -> Linear -> act -> Linear."""
    channels, height, width = shape
    out_height, out_width = cnn_feature_size(height, width, len(spec.channels))
    layers: list[nn.Module] = []
    fan_in = channels
    for out in spec.channels:
        # (B, fan_in, h, w) -> (B, out, h // 2, w // 2): padding 1 keeps h, w; the pool halves them
        layers.append(nn.Conv2d(fan_in, out, kernel_size=3, padding=1))
        if spec.batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(ACTIVATIONS[spec.activation]())
        layers.append(nn.MaxPool2d(2))
        fan_in = out
    layers.append(nn.Flatten())  # (B, fan_in * out_height * out_width)
    layers.append(nn.Linear(fan_in * out_height * out_width, spec.hidden_size))
    layers.extend(_activation_and_dropout(spec.activation, spec.dropout))
    layers.append(nn.Linear(spec.hidden_size, num_classes))  # (B, num_classes) logits
    return nn.Sequential(*layers)


def cnn_feature_size(height: int, width: int, stages: int) -> tuple[int, int]:
    """Spatial size after `stages` 2x2 max pools (each floors), or ValueError if it reaches zero."""
    out_height, out_width = height >> stages, width >> stages
    if out_height == 0 or out_width == 0:
        most = min(height, width).bit_length() - 1
        raise ValueError(
            f"model.channels has {stages} stages, but each halves the {height}x{width} input and "
            f"it would vanish; use at most {most} stages for this dataset"
        )
    return out_height, out_width


def _activation_and_dropout(activation: Activation, dropout: float) -> list[nn.Module]:
    layers = [ACTIVATIONS[activation]()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers
