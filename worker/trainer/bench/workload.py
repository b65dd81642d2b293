"""What the bench runs: its options, the two networks and the plain recipe a user would write
by hand, our default recipe, and the dataset and device that every run shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from taas.app.spec import JobSpec
from taas.worker.trainer.data import Dataset, load_dataset

Mode = Literal["off", "auto"]
MODES: tuple[Mode, ...] = ("off", "auto")  # interleaved per repeat, so drift hits both alike
Part = Literal["same-spec", "time-to-target"]
Echo = Callable[[str], None]

# The two networks of (a): the reference 784-128-10 MLP, and the CNN of pytorch/examples' MNIST.
NETWORKS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp": (
        "reference MLP (128 hidden, relu)",
        {"arch": "mlp", "hidden_sizes": [128], "activation": "relu"},
    ),
    "examples_cnn": (
        "pytorch/examples MNIST CNN",
        {
            "arch": "cnn",
            "channels": [32, 64],
            "pool_every": 2,
            "padding": "valid",
            "hidden_size": 128,
            "dropout": 0.25,
        },
    ),
}
# The recipe a user would write by hand: Adam at its default rate, small batches, no schedule.
PLAIN_RECIPE: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 64,
    "lr_schedule": "constant",
}
DEFAULT_TARGETS = {"cpu": (0.91,), "cuda": (0.93, 0.94)}  # test accuracies for (b)
DEFAULT_REPEATS_TARGET = {"cpu": 1, "cuda": 3}  # the CPU baseline takes minutes per run
BASELINE_MAX_EPOCHS = 20


class BenchError(Exception):
    """The bench cannot run as asked; the message says why."""


@dataclass(frozen=True)
class BenchOptions:
    """The command-line options; None means "the default for the device"."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    repeats: int = 3  # runs of each (network, mode) in (a)
    repeats_target: int | None = None
    epochs: int = 3  # per run in (a); the first is warm-up, so at least 2
    targets: tuple[float, ...] | None = None
    target_epochs: int | None = None  # epoch budget of our recipe in (b); None: its own
    baseline_epochs: int = BASELINE_MAX_EPOCHS  # epoch budget of the examples loop in (b)
    only: Part | None = None
    out: Path | None = None
    data_dir: Path | None = None
    dataset: str = "fashion_mnist"
    dataset_options: dict[str, Any] | None = None  # for "synthetic" (the tests use a tiny one)
    recipe: dict[str, Any] = field(default_factory=dict)  # spec fields over our defaults in (b)


@dataclass(frozen=True)
class Workload:
    """The dataset and device every spec of this bench shares."""

    dataset: str
    dataset_options: dict[str, Any] | None
    device: str
    data_dir: Path | None

    def job(self, **fields: Any) -> JobSpec:
        base: dict[str, Any] = {"dataset": self.dataset, "device": self.device}
        if self.dataset_options is not None:
            base["dataset_options"] = self.dataset_options
        return JobSpec.model_validate({**base, **fields})

    def load(self) -> Dataset:
        return load_dataset(self.job(), self.data_dir)


def plain_spec(workload: Workload, model: dict[str, Any], mode: Mode, **training: Any) -> JobSpec:
    """`model` trained with PLAIN_RECIPE (plus `training`) under acceleration `mode`."""
    return workload.job(model=model, training={**PLAIN_RECIPE, **training}, acceleration=mode)


def default_recipe_spec(
    workload: Workload, target: float, epochs: int | None, recipe: dict[str, Any] | None = None
) -> JobSpec:
    """Our defaults for the device (model, recipe, acceleration "auto"), stopping at `target`
    test accuracy after at most `epochs` (None: the recipe's own); `recipe` overrides spec
    fields (e.g. `{"model": {"arch": "resnet"}}`)."""
    recipe = recipe or {}
    training = {**recipe.get("training", {}), "target_accuracy": target}
    if epochs is not None:
        training["epochs"] = epochs
    return workload.job(**{**recipe, "training": training})
