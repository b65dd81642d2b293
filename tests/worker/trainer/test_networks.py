from __future__ import annotations

from typing import Any, get_args

import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

from app.spec import Activation, ModelSpec, parameter_count
from worker.trainer.networks import ACTIVATIONS, build_network

MODEL_SPEC: TypeAdapter[Any] = TypeAdapter(ModelSpec)

CONFIGS = [
    ({"arch": "mlp", "hidden_sizes": [128]}, (1, 28, 28), 10),
    (
        {"arch": "mlp", "hidden_sizes": [64, 32], "batch_norm": True, "dropout": 0.2},
        (1, 28, 28),
        10,
    ),
    ({"arch": "mlp", "hidden_sizes": []}, (3, 8, 8), 5),
    ({"arch": "mlp", "hidden_sizes": [17, 9, 5], "activation": "gelu"}, (3, 32, 32), 100),
    ({"arch": "cnn", "channels": [8], "hidden_size": 16}, (1, 12, 12), 4),
    ({"arch": "cnn", "channels": [8, 16], "batch_norm": True}, (1, 28, 28), 10),
    ({"arch": "cnn", "channels": [4, 8, 16], "hidden_size": 32, "dropout": 0.5}, (3, 32, 32), 10),
    ({"arch": "cnn", "channels": [4, 8, 16], "batch_norm": True}, (3, 13, 11), 7),
]


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
    network = build_network(MODEL_SPEC.validate_python(model), shape, classes)

    logits = network(torch.rand(4, *shape))

    assert logits.shape == (4, classes)


def test_mlp_layers_follow_the_spec() -> None:
    spec = MODEL_SPEC.validate_python(
        {
            "arch": "mlp",
            "hidden_sizes": [16, 8],
            "batch_norm": True,
            "dropout": 0.1,
            "activation": "elu",
        }
    )

    kinds = [type(layer) for layer in build_network(spec, (1, 4, 4), 3).children()]

    block = [nn.Linear, nn.BatchNorm1d, nn.ELU, nn.Dropout]
    assert kinds == [nn.Flatten, *block, *block, nn.Linear]


def test_cnn_layers_follow_the_spec() -> None:
    spec = MODEL_SPEC.validate_python({"arch": "cnn", "channels": [4, 8], "activation": "silu"})

    kinds = [type(layer) for layer in build_network(spec, (1, 8, 8), 3).children()]

    stage = [nn.Conv2d, nn.SiLU, nn.MaxPool2d]
    assert kinds == [*stage, *stage, nn.Flatten, nn.Linear, nn.SiLU, nn.Linear]


def test_every_spec_activation_has_a_module() -> None:
    assert set(ACTIVATIONS) == set(get_args(Activation))


def test_same_seed_gives_the_same_initial_weights() -> None:
    spec = MODEL_SPEC.validate_python({"arch": "cnn", "channels": [4], "batch_norm": True})

    torch.manual_seed(7)
    first = build_network(spec, (1, 8, 8), 3).state_dict()
    torch.manual_seed(7)
    second = build_network(spec, (1, 8, 8), 3).state_dict()
    torch.manual_seed(8)
    other = build_network(spec, (1, 8, 8), 3).state_dict()

    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(first["0.weight"], other["0.weight"])


def test_cnn_with_more_stages_than_the_input_allows_is_refused() -> None:
    spec = MODEL_SPEC.validate_python({"arch": "cnn", "channels": [4, 4, 4, 4]})

    with pytest.raises(ValueError, match="use at most 3 stages"):
        build_network(spec, (1, 12, 12), 10)
