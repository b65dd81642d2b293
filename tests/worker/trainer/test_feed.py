from __future__ import annotations

import pytest
import torch

from taas.app.spec import Augmentation
from taas.worker.trainer.data import Preprocess
from taas.worker.trainer.feed import DeviceBatches, LoaderBatches

CPU = torch.device("cpu")


def images(count: int = 24, shape: tuple[int, int, int] = (3, 6, 5)) -> torch.Tensor:
    """(count, C, H, W) uint8 with distinct, asymmetric content, so flips and shifts show."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, *shape), generator=generator, dtype=torch.uint8)


def device_batches(
    x: torch.Tensor,
    preprocess: Preprocess,
    augment: Augmentation | None = None,
    batch_size: int = 8,
) -> DeviceBatches:
    return DeviceBatches(
        x,
        torch.arange(len(x)),  # each label names its sample, so batches can be put back in order
        batch_size,
        preprocess,
        torch.Generator().manual_seed(5),
        CPU,
        augment=augment or Augmentation(),
        channels_last=False,
        drop_last=False,
    )


def epoch_in_sample_order(feed: DeviceBatches | LoaderBatches) -> torch.Tensor:
    """One epoch's normalized samples, (N, C, H, W) float32, sorted back by label."""
    batches = list(feed.epoch())
    x = torch.cat([batch_x for batch_x, _ in batches])
    y = torch.cat([batch_y for _, batch_y in batches])
    assert sorted(y.tolist()) == list(range(len(y)))  # every sample exactly once
    return x[torch.argsort(y)]


def test_device_batches_normalize_float_data_like_preprocess_apply() -> None:
    x = torch.randn(24, 4, 1, 1, generator=torch.Generator().manual_seed(1)) * 7 + 3
    preprocess = Preprocess(scale=1.0, mean=[3.0, 2.0, 1.0, 0.0], std=[7.0, 1.0, 2.0, 0.5])

    out = epoch_in_sample_order(device_batches(x, preprocess))

    assert out.dtype == torch.float32
    assert torch.allclose(out, preprocess.apply(x), atol=1e-6)


@pytest.mark.parametrize(
    "augment",
    [Augmentation(flip=True), Augmentation(translate=2), Augmentation(flip=True, translate=1)],
)
def test_device_batches_augment_float_images_as_they_do_uint8_ones(
    augment: Augmentation,
) -> None:
    x_uint8 = images()
    identity = Preprocess(scale=1.0, mean=[0.0] * 3, std=[1.0] * 3)

    from_uint8 = epoch_in_sample_order(device_batches(x_uint8, identity, augment))
    from_float = epoch_in_sample_order(device_batches(x_uint8.float(), identity, augment))

    assert torch.equal(from_float, from_uint8)  # same draws, same pixels moved
    assert not torch.equal(from_float, x_uint8.float())  # and augmentation did move some


def test_loader_batches_normalize_float_data_per_sample() -> None:
    x = torch.randn(20, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 5 - 1
    preprocess = Preprocess(scale=1.0, mean=[-1.0, 0.0, 1.0], std=[5.0, 2.0, 0.25])
    feed = LoaderBatches(x, torch.arange(20), 6, preprocess, torch.Generator().manual_seed(0), CPU)

    out = epoch_in_sample_order(feed)

    assert out.dtype == torch.float32
    assert torch.allclose(out, preprocess.apply(x), atol=1e-6)


def test_loader_batches_read_uint8_images_through_the_tutorial_path() -> None:
    x = images(count=10)
    preprocess = Preprocess(scale=1 / 255, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    feed = LoaderBatches(x, torch.arange(10), 4, preprocess, torch.Generator().manual_seed(0), CPU)

    assert torch.allclose(epoch_in_sample_order(feed), preprocess.apply(x), atol=1e-5)
    unscaled = Preprocess(scale=1.0, mean=[0.0] * 3, std=[1.0] * 3)
    with pytest.raises(ValueError, match="8-bit images"):
        LoaderBatches(x, torch.arange(10), 4, unscaled, torch.Generator(), CPU)
