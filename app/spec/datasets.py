"""The datasets a spec may name: the built-ins, uploads by id, the options of the generated
``synthetic`` one, and what the trainer and the API know of a dataset before loading it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from taas.app.spec.base import StrictModel, Width

if TYPE_CHECKING:  # only the annotation of dataset_info: the job module imports this one
    from taas.app.spec.job import JobSpec

BUILTIN_DATASETS: tuple[str, ...] = ("fashion_mnist", "mnist", "cifar10", "synthetic")
# Uploaded datasets are named by their id.
DATASET_ID_PATTERN = re.compile(r"^ds_[0-9a-f]{24}$")


class SyntheticOptions(StrictModel):
    """Shape of the generated ``synthetic`` dataset: class prototypes plus noise, seeded."""

    num_classes: int = Field(default=10, ge=2, le=100)
    shape: tuple[Width, Width, Width] = (1, 28, 28)
    train_size: int = Field(default=2000, ge=10)
    test_size: int = Field(default=500, ge=10)
    noise: float = Field(default=0.6, ge=0.0, le=4.0)
    seed: int = Field(default=0, ge=0, lt=2**32)


class DatasetInfo(StrictModel):
    """What the trainer and the API need to know about a dataset before loading it."""

    name: str
    shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    class_names: list[str]
    train_size: int
    test_size: int
    value_bytes: Literal[1, 4] = 1  # per stored value: uint8 images, or float32 values


FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def dataset_info(spec: JobSpec) -> DatasetInfo:
    """Static description of a built-in dataset (for ``synthetic``, of the options in the spec)."""
    if spec.dataset == "synthetic":
        options = spec.dataset_options or SyntheticOptions()
        return DatasetInfo(
            name="synthetic",
            shape=options.shape,
            num_classes=options.num_classes,
            class_names=[f"class_{i}" for i in range(options.num_classes)],
            train_size=options.train_size,
            test_size=options.test_size,
        )
    known = {
        "fashion_mnist": ((1, 28, 28), FASHION_MNIST_CLASSES, 60000, 10000),
        "mnist": ((1, 28, 28), [str(i) for i in range(10)], 60000, 10000),
        "cifar10": ((3, 32, 32), CIFAR10_CLASSES, 50000, 10000),
    }
    if spec.dataset not in known:
        raise ValueError(f"unknown dataset {spec.dataset!r}")
    shape, names, train_size, test_size = known[spec.dataset]
    return DatasetInfo(
        name=spec.dataset,
        shape=shape,
        num_classes=len(names),
        class_names=names,
        train_size=train_size,
        test_size=test_size,
    )
