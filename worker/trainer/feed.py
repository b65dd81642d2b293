"""Training batches, two ways.

- ``LoaderBatches``: the PyTorch tutorial's way, a DataLoader over a dataset that does what
  torchvision's ``datasets.FashionMNIST(transform=...)`` does for each sample: make a PIL image,
  then ``ToTensor()`` and ``Normalize()``. This is the honest baseline (``acceleration: off``).
- ``DeviceBatches``: the whole split held on the device as stored (uint8 images, or float32 for
  uploaded float data); each batch is gathered, augmented and normalized there in a few tensor
  ops, with no Python per sample and no host copy.

Both draw the epoch's order from one seeded CPU generator, so a run is reproducible and a resumed
run continues the same sequence.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from torchvision import transforms

from taas.app.spec import Augmentation
from taas.worker.trainer.data import Preprocess

Batch = tuple[torch.Tensor, torch.Tensor]  # (B, C, H, W) float32, (B,) int64


class _TutorialDataset(TorchDataset[tuple[torch.Tensor, int]]):
    """torchvision's dataset path, one sample at a time: uint8 array -> PIL image ->
    ToTensor (scales by 1/255) -> Normalize(mean, std)."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, preprocess: Preprocess) -> None:
        if x_uint8.dtype != torch.uint8 or preprocess.scale != 1 / 255:
            raise ValueError("the tutorial path reads 8-bit images (ToTensor scales by 1/255)")
        self.x = x_uint8.permute(0, 2, 3, 1).numpy()  # (N, H, W, C): PIL's layout
        self.y = y.tolist()
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(preprocess.mean, preprocess.std)]
        )

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = self.x[index]  # (H, W, C) uint8
        image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
        return self.transform(image), self.y[index]


class _FloatSampleDataset(TorchDataset[tuple[torch.Tensor, int]]):
    """The same path for float32 data, which is no image PIL could hold: each (C, H, W) sample
    is scaled and then normalized by torchvision's Normalize on the tensor."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, preprocess: Preprocess) -> None:
        self.x, self.y, self.scale = x, y.tolist(), preprocess.scale
        self.normalize = transforms.Normalize(preprocess.mean, preprocess.std)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.normalize(self.x[index] * self.scale), self.y[index]


class LoaderBatches:
    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        preprocess: Preprocess,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        """x: (N, C, H, W) uint8 images (through PIL, as the tutorial does) or float32."""
        dataset: TorchDataset[tuple[torch.Tensor, int]]
        if x.dtype == torch.float32:
            dataset = _FloatSampleDataset(x, y, preprocess)
        else:
            dataset = _TutorialDataset(x, y, preprocess)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            drop_last=lone_last_sample(len(y), batch_size),
        )
        self.device = device

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, start: int = 0) -> Iterator[Batch]:
        """The epoch's batches from the ``start``-th on (the order is drawn as for a whole one;
        the skipped batches are still loaded: this is the plain baseline's loader)."""
        for x, y in itertools.islice(self.loader, start, None):
            yield x.to(self.device), y.to(self.device)


class DeviceBatches:
    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        preprocess: Preprocess,
        generator: torch.Generator,
        device: torch.device,
        *,
        augment: Augmentation,
        channels_last: bool,
        drop_last: bool,
    ) -> None:
        # (N, C, H, W) as stored: uint8 images take a quarter of float32's memory.
        self.x = x.to(device)
        self.y = y.to(device)  # (N,)
        channels = self.x.shape[1]
        std = torch.tensor(preprocess.std, device=device).view(1, channels, 1, 1)
        mean = torch.tensor(preprocess.mean, device=device).view(1, channels, 1, 1)
        # (x * scale - mean) / std folded into one multiply-add per pixel.
        self.multiplier = preprocess.scale / std
        self.offset = -mean / std
        self.batch_size, self.generator, self.augment = batch_size, generator, augment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # Full batches only when asked (compiled graphs want one shape); the epoch's shuffle
        # means every sample is still seen across epochs.
        count = len(self.y)
        full_only = (drop_last and count >= batch_size) or lone_last_sample(count, batch_size)
        self.batches = count // batch_size if full_only else -(-count // batch_size)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 or float32 on the device -> float32 in the training memory format."""
        normalized = torch.addcmul(self.offset, x.to(torch.float32), self.multiplier)
        return normalized.contiguous(memory_format=self.memory_format)

    def __len__(self) -> int:
        return self.batches

    def epoch(self, start: int = 0) -> Iterator[Batch]:
        """The epoch's batches from the ``start``-th on; the order and augmentation are drawn
        for the whole epoch either way, so a resumed epoch goes on exactly where it stopped."""
        count, size = len(self.y), self.batch_size
        # One host->device copy per epoch for the order and the augmentation draws.
        order = torch.randperm(count, generator=self.generator).to(self.x.device)
        flips = torch.rand(count, generator=self.generator).to(self.x.device) < 0.5
        shift = self.augment.translate
        shifts = torch.randint(-shift, shift + 1, (count, 2), generator=self.generator)
        shifts = shifts.to(self.x.device)
        for index in range(start, self.batches):
            chosen = order[index * size : (index + 1) * size]  # (B,)
            x = self.x[chosen]  # (B, C, H, W) as stored
            if self.augment.flip:
                x = torch.where(flips[chosen].view(-1, 1, 1, 1), x.flip(3), x)
            if shift:
                x = translate(x, shifts[chosen], shift)
            yield self.normalize(x), self.y[chosen]


def lone_last_sample(count: int, batch_size: int) -> bool:
    """A last batch of one sample is dropped: BatchNorm cannot train on a single sample."""
    return count > batch_size and count % batch_size == 1


def translate(x: torch.Tensor, shifts: torch.Tensor, limit: int) -> torch.Tensor:
    """Shift each image by its (dy, dx) in [-limit, limit], filling with zeros: (B, C, H, W)."""
    batch, _, height, width = x.shape
    padded = torch.nn.functional.pad(x, (limit, limit, limit, limit))  # (B, C, H+2l, W+2l)
    rows = torch.arange(height, device=x.device) + limit - shifts[:, :1]  # (B, H)
    cols = torch.arange(width, device=x.device) + limit - shifts[:, 1:]  # (B, W)
    samples = torch.arange(batch, device=x.device).view(-1, 1, 1)
    # Advanced indexing puts the indexed dims first: (B, H, W, C) -> (B, C, H, W).
    return padded.permute(0, 2, 3, 1)[samples, rows[:, :, None], cols[:, None, :]].permute(
        0, 3, 1, 2
    )
