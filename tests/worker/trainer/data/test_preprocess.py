"""The per-channel normalization, on uint8 images and on float data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taas.app.spec import DatasetInfo
from taas.worker.trainer.data import Dataset, Preprocess, load_dataset, preprocess_for
from tests.worker.trainer.fakes import tiny_spec


def test_preprocess_normalizes_the_training_split_per_channel() -> None:
    dataset = load_dataset(tiny_spec(options={"shape": [3, 8, 8]}), None)

    preprocess = preprocess_for(dataset)
    x = preprocess.apply(dataset.train_x)  # (N, 3, 8, 8) float32

    assert x.dtype == torch.float32
    assert x.shape == dataset.train_x.shape
    assert len(preprocess.mean) == 3
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5)


def test_preprocess_follows_its_documented_formula_and_json() -> None:
    preprocess = Preprocess(scale=1 / 255, mean=[0.25, 0.5], std=[0.5, 2.0])
    x = torch.tensor([[[[0]], [[255]]]], dtype=torch.uint8)  # (1, 2, 1, 1)

    out = preprocess.apply(x)

    assert out.flatten().tolist() == [pytest.approx(-0.5), pytest.approx(0.25)]
    assert preprocess.to_json() == {"scale": 1 / 255, "mean": [0.25, 0.5], "std": [0.5, 2.0]}
    assert Preprocess.from_json(preprocess.to_json()) == preprocess


def test_preprocess_statistics_are_float32_values() -> None:
    preprocess = preprocess_for(load_dataset(tiny_spec(), None))

    for value in [*preprocess.mean, *preprocess.std]:
        assert float(np.float32(value)) == value


# --- float data ------------------------------------------------------------------------------


def float_dataset(x: torch.Tensor) -> Dataset:
    info = DatasetInfo(
        name="f",
        shape=tuple(x.shape[1:]),
        num_classes=2,
        class_names=["a", "b"],
        train_size=len(x),
        test_size=0,
    )
    y = torch.arange(len(x)) % 2
    return Dataset(info, x, y, x[:0], y[:0])


def test_preprocess_for_float_data_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many chunks of 4 samples (12 values).
    monkeypatch.setattr("taas.worker.trainer.data.dataset.FLOAT_CHUNK_VALUES", 50)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((41, 3, 2, 2), generator=generator) * torch.tensor([1.0, 300.0, 1e-3]).view(
        1, 3, 1, 1
    ) + torch.tensor([5.0, -2000.0, 0.5]).view(1, 3, 1, 1)

    preprocess = preprocess_for(float_dataset(x))

    values = x.numpy().astype(np.float64)
    assert preprocess.scale == 1.0
    assert preprocess.mean == [float(np.float32(m)) for m in values.mean(axis=(0, 2, 3))]
    assert preprocess.std == [float(np.float32(s)) for s in values.std(axis=(0, 2, 3))]
    normalized = preprocess.apply(x)
    # float32 arithmetic: channel 2's spread is 1e-3 of its mean, so 1e-4 is as close as it gets.
    assert torch.allclose(normalized.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(normalized.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_preprocess_for_float_features_leaves_constant_ones_finite() -> None:
    x = torch.stack([torch.arange(10.0), torch.full((10,), 3.0)], dim=1).view(10, 2, 1, 1)

    preprocess = preprocess_for(float_dataset(x))

    assert preprocess.mean == [4.5, 3.0]
    assert preprocess.std == [pytest.approx(float(np.std(np.arange(10.0)))), 1.0]
    assert torch.isfinite(preprocess.apply(x)).all()
