"""The synthetic dataset: shapes, balance, seed and noise."""

from __future__ import annotations

import torch

from taas.app.spec import JobSpec
from taas.worker.trainer.data import load_dataset
from tests.worker.trainer.fakes import tiny_spec


def test_synthetic_has_the_requested_shapes_dtypes_and_balanced_labels() -> None:
    dataset = load_dataset(tiny_spec(options={"num_classes": 4}), None)

    assert dataset.train_x.shape == (256, 1, 12, 12)
    assert dataset.test_x.shape == (128, 1, 12, 12)
    assert dataset.train_x.dtype == torch.uint8
    assert dataset.train_y.dtype == torch.int64
    assert torch.bincount(dataset.train_y).tolist() == [64, 64, 64, 64]
    assert torch.bincount(dataset.test_y).tolist() == [32, 32, 32, 32]
    assert dataset.train_y[:8].tolist() != sorted(dataset.train_y[:8].tolist())  # shuffled
    assert dataset.info.class_names == ["class_0", "class_1", "class_2", "class_3"]


def test_synthetic_is_deterministic_in_its_seed() -> None:
    first = load_dataset(tiny_spec(), None)
    second = load_dataset(tiny_spec(), None)
    other = load_dataset(tiny_spec(options={"seed": 4}), None)

    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(first.test_y, second.test_y)
    assert not torch.equal(first.train_x, other.train_x)


def test_synthetic_defaults_follow_synthetic_options() -> None:
    dataset = load_dataset(JobSpec(dataset="synthetic"), None)

    assert dataset.train_x.shape == (2000, 1, 28, 28)
    assert dataset.test_x.shape == (500, 1, 28, 28)
    assert dataset.info.num_classes == 10


def test_synthetic_noise_option_changes_how_far_samples_stray() -> None:
    quiet = load_dataset(tiny_spec(options={"noise": 0.1}), None)
    loud = load_dataset(tiny_spec(options={"noise": 2.0}), None)

    # Same prototypes (same seed); more noise pushes more pixels to the 0/255 clip.
    def saturated(x: torch.Tensor) -> float:
        return ((x == 0) | (x == 255)).float().mean().item()

    assert saturated(loud.train_x) > saturated(quiet.train_x) + 0.3
