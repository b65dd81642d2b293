from __future__ import annotations

from typing import Any, get_args

import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

from taas.app.spec import Activation, ModelSpec, NetworkDoesNotFit, parameter_count
from taas.worker.trainer.networks import (
    ACTIVATIONS,
    BasicBlock,
    MirrorAveraged,
    build_network,
    can_pool_first,
    for_inference,
)

MODEL_SPEC: TypeAdapter[Any] = TypeAdapter(ModelSpec)

MLPS = [
    ({"arch": "mlp", "hidden_sizes": [128]}, (1, 28, 28), 10),
    (
        {"arch": "mlp", "hidden_sizes": [64, 32], "batch_norm": True, "dropout": 0.2},
        (1, 28, 28),
        10,
    ),
    ({"arch": "mlp", "hidden_sizes": []}, (3, 8, 8), 5),
    ({"arch": "mlp", "hidden_sizes": [17, 9, 5], "activation": "gelu"}, (3, 32, 32), 100),
]
CNNS = [
    ({"arch": "cnn", "channels": [8], "hidden_size": 16}, (1, 12, 12), 4),
    ({"arch": "cnn", "channels": [8, 16], "batch_norm": True}, (1, 28, 28), 10),
    ({"arch": "cnn", "channels": [4, 8, 16], "hidden_size": 32, "dropout": 0.5}, (3, 32, 32), 10),
    ({"arch": "cnn", "channels": [4, 8, 16], "batch_norm": True}, (3, 13, 11), 7),
    (
        {"arch": "cnn", "channels": [24, 48, 96], "hidden_size": 0, "batch_norm": True},
        (3, 32, 32),
        10,
    ),
    (
        {"arch": "cnn", "channels": [8, 8, 16, 16], "pool_every": 2, "pooling": "avg"},
        (3, 32, 32),
        10,
    ),
    (
        {"arch": "cnn", "channels": [8, 16, 16], "pool_every": 3, "padding": "valid"},
        (1, 28, 28),
        10,
    ),
    (
        {
            "arch": "cnn",
            "channels": [6, 12],
            "padding": "valid",
            "pooling": "avg",
            "hidden_size": 0,
            "batch_norm": True,
            "dropout": 0.1,
        },
        (1, 12, 12),
        3,
    ),
    (
        {"arch": "cnn", "channels": [4, 8], "pool_every": 2, "padding": "valid", "hidden_size": 0},
        (3, 32, 32),
        10,
    ),
    (
        {
            "arch": "cnn",
            "channels": [32, 64],
            "pool_every": 2,
            "padding": "valid",
            "hidden_size": 128,
        },
        (1, 28, 28),
        10,
    ),
]
RESNETS = [
    ({"arch": "resnet", "widths": [16]}, (1, 12, 12), 4),
    ({"arch": "resnet", "widths": [16, 32], "blocks_per_stage": 2}, (1, 28, 28), 10),
    ({"arch": "resnet", "widths": [32, 64, 128]}, (3, 32, 32), 10),
    (
        {"arch": "resnet", "widths": [8, 8, 16], "blocks_per_stage": 2, "dropout": 0.2},
        (3, 13, 11),
        7,
    ),
    ({"arch": "resnet", "widths": [8, 8, 16], "activation": "gelu"}, (1, 28, 28), 10),
]
CONFIGS = MLPS + CNNS + RESNETS


def network_for(model: dict[str, Any], shape: tuple[int, int, int], classes: int) -> nn.Module:
    return build_network(MODEL_SPEC.validate_python(model), shape, classes)


@pytest.mark.parametrize(("model", "shape", "classes"), CONFIGS)
def test_parameter_count_matches_the_built_network(
    model: dict[str, Any], shape: tuple[int, int, int], classes: int
) -> None:
    spec = MODEL_SPEC.validate_python(model)

    network = build_network(spec, shape, classes)

    built = sum(parameter.numel() for parameter in network.parameters())
    assert built == parameter_count(spec, shape, classes)


@pytest.mark.parametrize(("model", "shape", "classes"), CONFIGS)
def test_network_maps_images_to_class_logits(
    model: dict[str, Any], shape: tuple[int, int, int], classes: int
) -> None:
    network = network_for(model, shape, classes)

    logits = network(torch.rand(4, *shape))

    assert logits.shape == (4, classes)


def test_the_pytorch_examples_mnist_net_has_its_published_size() -> None:
    # conv1 320 + conv2 18,496 + fc1 1,179,776 + fc2 1,290 (pytorch/examples mnist/main.py)
    spec = MODEL_SPEC.validate_python(
        {
            "arch": "cnn",
            "channels": [32, 64],
            "pool_every": 2,
            "padding": "valid",
            "hidden_size": 128,
        }
    )

    network = build_network(spec, (1, 28, 28), 10)

    assert sum(parameter.numel() for parameter in network.parameters()) == 1_199_882
    assert parameter_count(spec, (1, 28, 28), 10) == 1_199_882


def test_mlp_layers_follow_the_spec() -> None:
    network = network_for(
        {
            "arch": "mlp",
            "hidden_sizes": [16, 8],
            "batch_norm": True,
            "dropout": 0.1,
            "activation": "elu",
        },
        (1, 4, 4),
        3,
    )

    kinds = [type(layer) for layer in network.children()]

    block = [nn.Linear, nn.BatchNorm1d, nn.ELU, nn.Dropout]
    assert kinds == [nn.Flatten, *block, *block, nn.Linear]


def test_cnn_layers_follow_the_spec() -> None:
    network = network_for(
        {
            "arch": "cnn",
            "channels": [4, 8, 8],
            "pool_every": 2,
            "pooling": "avg",
            "activation": "silu",
            "hidden_size": 16,
            "dropout": 0.25,
        },
        (1, 8, 8),
        3,
    )

    kinds = [type(layer) for layer in network.children()]

    conv = [nn.Conv2d, nn.SiLU]
    head = [nn.Flatten, nn.Dropout, nn.Linear, nn.SiLU, nn.Dropout, nn.Linear]
    assert kinds == [*conv, *conv, nn.AvgPool2d, *conv, *head]


def test_cnn_with_batch_norm_has_convs_without_bias_and_valid_padding_pads_nothing() -> None:
    network = network_for(
        {"arch": "cnn", "channels": [4, 8], "batch_norm": True, "padding": "valid"}, (1, 12, 12), 3
    )

    convs = [layer for layer in network.children() if isinstance(layer, nn.Conv2d)]

    assert [conv.bias for conv in convs] == [None, None]
    assert [conv.padding for conv in convs] == [(0, 0), (0, 0)]


def test_cnn_without_hidden_size_maps_features_straight_to_logits() -> None:
    network = network_for(
        {"arch": "cnn", "channels": [24, 48, 96], "hidden_size": 0, "batch_norm": True},
        (3, 32, 32),
        10,
    )

    linears = [layer for layer in network.children() if isinstance(layer, nn.Linear)]

    assert [(linear.in_features, linear.out_features) for linear in linears] == [(96 * 4 * 4, 10)]


def test_resnet_projects_the_shortcut_whenever_channels_or_resolution_change() -> None:
    network = network_for(
        {"arch": "resnet", "widths": [8, 8, 16], "blocks_per_stage": 2}, (1, 16, 16), 10
    )

    blocks = [layer for layer in network.children() if isinstance(layer, BasicBlock)]

    projected = [not isinstance(block.shortcut, nn.Identity) for block in blocks]
    # Stage 2 keeps width 8 but halves the resolution: its first block still needs a 1x1 conv.
    assert projected == [False, False, True, False, True, False]
    features = network[:-3](torch.rand(2, 1, 16, 16))  # up to the global average pool
    assert features.shape == (2, 16, 4, 4)


def test_resnet_blocks_start_as_their_shortcut() -> None:
    network = network_for({"arch": "resnet", "widths": [8, 16]}, (1, 12, 12), 10)

    blocks = [layer for layer in network.children() if isinstance(layer, BasicBlock)]

    assert all(torch.count_nonzero(block.residual[-1].weight) == 0 for block in blocks)


def test_every_spec_activation_has_a_module() -> None:
    assert set(ACTIVATIONS) == set(get_args(Activation))


@pytest.mark.parametrize("activation", get_args(Activation))
@pytest.mark.parametrize(
    "model",
    [
        {"arch": "mlp", "hidden_sizes": [8]},
        {"arch": "cnn", "channels": [4], "hidden_size": 8},
        {"arch": "resnet", "widths": [4, 8]},
    ],
)
def test_every_activation_builds_and_runs(model: dict[str, Any], activation: Activation) -> None:
    network = network_for({**model, "activation": activation}, (1, 8, 8), 3)

    logits = network(torch.rand(2, 1, 8, 8))

    assert logits.shape == (2, 3)
    assert any(isinstance(layer, ACTIVATIONS[activation]) for layer in network.modules())


FAST_PATH_MODELS = [
    ({"arch": "mlp", "hidden_sizes": [16], "batch_norm": True}, (3, 12, 12)),
    ({"arch": "cnn", "channels": [8, 16], "batch_norm": True, "hidden_size": 0}, (3, 12, 12)),
    ({"arch": "cnn", "channels": [8, 16], "pool_every": 2, "padding": "valid"}, (1, 12, 12)),
    ({"arch": "resnet", "widths": [8, 16]}, (3, 12, 12)),
]


@pytest.mark.parametrize(("model", "shape"), FAST_PATH_MODELS)
def test_channels_last_gives_the_same_logits(
    model: dict[str, Any], shape: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    network = network_for(model, shape, 5).eval()
    images = torch.rand(4, *shape)
    expected = network(images)

    network = network.to(memory_format=torch.channels_last)
    logits = network(images.to(memory_format=torch.channels_last))

    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("model", "shape"), FAST_PATH_MODELS)
def test_bf16_autocast_gives_close_logits_and_finite_gradients(
    model: dict[str, Any], shape: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    network = network_for(model, shape, 5)
    images = torch.rand(4, *shape)
    expected = network(images)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = network(images)
    logits.float().sum().backward()

    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), expected, rtol=0.1, atol=0.1)
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    "model",
    [
        {"arch": "mlp", "hidden_sizes": [64], "batch_norm": True},
        {"arch": "cnn", "channels": [8, 16], "hidden_size": 32},
        {"arch": "cnn", "channels": [8, 16], "hidden_size": 0, "batch_norm": True},
        {"arch": "resnet", "widths": [8, 16]},
    ],
)
def test_one_batch_can_be_overfit(model: dict[str, Any]) -> None:
    """The network can learn at all: 16 random images with random labels are memorized."""
    torch.manual_seed(0)
    network = network_for(model, (1, 12, 12), 10)
    images, labels = torch.randn(16, 1, 12, 12), torch.randint(0, 10, (16,))
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)

    losses = []
    for _ in range(200):
        loss = nn.functional.cross_entropy(network(images), labels)
        losses.append(loss.item())
        if losses[-1] < 0.05:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    assert losses[-1] < 0.05, f"loss {losses[0]:.3f} -> {losses[-1]:.3f} after {len(losses)} steps"


@pytest.mark.parametrize(
    "model",
    [
        {"arch": "mlp", "hidden_sizes": [8], "batch_norm": True},
        {"arch": "cnn", "channels": [4], "batch_norm": True},
        {"arch": "resnet", "widths": [4, 8]},
    ],
)
def test_same_seed_gives_the_same_initial_weights(model: dict[str, Any]) -> None:
    torch.manual_seed(7)
    first = network_for(model, (1, 8, 8), 3).state_dict()
    torch.manual_seed(7)
    second = network_for(model, (1, 8, 8), 3).state_dict()
    torch.manual_seed(8)
    other = network_for(model, (1, 8, 8), 3).state_dict()

    assert list(first) == list(second)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"arch": "cnn", "channels": [4, 4, 4, 4]}, "conv 4 of 4 leaves nothing of the 12x12"),
        ({"arch": "cnn", "channels": [4] * 6, "padding": "valid", "pool_every": 3}, "conv 5 of 6"),
        ({"arch": "resnet", "widths": [4] * 5}, "stage 5 of 5 shrinks the 12x12"),
    ],
)
def test_a_network_too_deep_for_its_input_is_refused(model: dict[str, Any], match: str) -> None:
    with pytest.raises(NetworkDoesNotFit, match=match):
        network_for(model, (1, 12, 12), 10)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "tanh", "sigmoid"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_pool_first_computes_the_same_function_with_the_same_weights(
    activation: str, batch_norm: bool
) -> None:
    spec = MODEL_SPEC.validate_python(
        {
            "arch": "cnn",
            "channels": [4, 8, 8],
            "pool_every": 1,
            "activation": activation,
            "batch_norm": batch_norm,
        }
    )
    torch.manual_seed(0)
    standard = build_network(spec, (1, 16, 16), 5).eval()
    reordered = build_network(spec, (1, 16, 16), 5, pool_first=True).eval()
    reordered.load_state_dict(standard.state_dict())  # the same keys: strict loading passes
    x = torch.randn(6, 1, 16, 16)

    kinds = [type(layer) for layer in reordered]
    first_activation = kinds.index(type(ACTIVATIONS[activation]()))  # type: ignore[index]
    assert kinds.index(nn.MaxPool2d) == first_activation - 1
    assert torch.equal(standard(x), reordered(x))


@pytest.mark.parametrize(
    "model",
    [
        {"arch": "cnn", "channels": [8], "activation": "gelu"},  # not monotonic
        {"arch": "cnn", "channels": [8], "pooling": "avg"},  # avg does not commute
        {"arch": "cnn", "channels": [8], "pool_every": 2},  # no pool at all
        {"arch": "mlp", "hidden_sizes": [8]},
    ],
)
def test_pool_first_leaves_networks_it_does_not_apply_to_unchanged(model: dict[str, Any]) -> None:
    spec = MODEL_SPEC.validate_python(model)

    assert not can_pool_first(spec)
    standard = [type(layer) for layer in build_network(spec, (1, 12, 12), 3)]
    assert [type(layer) for layer in build_network(spec, (1, 12, 12), 3, pool_first=True)] == (
        standard
    )


def test_test_time_flip_averages_the_logits_of_each_image_and_its_mirror_image() -> None:
    torch.manual_seed(0)
    network = build_network(TypeAdapter(ModelSpec).validate_python({"arch": "cnn"}), (1, 8, 8), 3)
    network.eval()
    x = torch.randn(5, 1, 8, 8)
    flipping = for_inference(network, test_time_flip=True)

    with torch.no_grad():
        expected = (network(x) + network(x.flip(3))) / 2
        assert isinstance(flipping, MirrorAveraged)
        torch.testing.assert_close(flipping(x), expected)
        # An image and its mirror image get the same prediction, which the network alone does not.
        torch.testing.assert_close(flipping(x.flip(3)), flipping(x))
        assert not torch.allclose(network(x.flip(3)), network(x))
    assert for_inference(network, test_time_flip=False) is network
