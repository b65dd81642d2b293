"""The job spec itself (``JobSpec``): what to train on, which network, how, where, and what to
export; filled with the recipe defaults for where the job runs, and normalized as stored."""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from taas.app.spec.acceleration import AccelerationSpec
from taas.app.spec.base import StrictModel
from taas.app.spec.datasets import SyntheticOptions
from taas.app.spec.networks import ModelSpec, default_model
from taas.app.spec.training import TrainingSpec, with_recipe_defaults

ExportFormat = Literal["safetensors", "onnx", "torchscript"]
DeviceName = Literal["auto", "cpu", "cuda"]
JOB_ID_PATTERN = re.compile(r"^job_[0-9a-f]{24}$")


def _default_exports() -> list[ExportFormat]:
    return ["safetensors"]


class KeepBest(StrictModel):
    """Keep the checkpoint of the epoch that scored best on this metric."""

    metric: Literal["val_accuracy", "val_loss", "train_accuracy", "train_loss"]
    mode: Literal["max", "min"]


class CheckpointPolicy(StrictModel):
    """Which checkpoints the service keeps (saved every ``training.checkpoint_every_epochs``).
    The newest is always among them: a new attempt resumes from it."""

    keep_last: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="the newest checkpoints kept (left out: the server's TAAS_KEEP_CHECKPOINTS)",
    )
    keep_best: KeepBest | None = Field(
        default=None, description="also keep the one of the epoch that scored best"
    )
    export: Literal["last", "best"] = Field(
        default="last",
        description="the weights the job exports: its last, or those of its best validation "
        "(by keep_best's metric when that is val_accuracy or val_loss, else val_accuracy)",
    )

    def selection(self) -> tuple[str, str]:
        """(metric, mode) that makes a validation the best one."""
        keep = self.keep_best
        if keep is not None and keep.metric in ("val_accuracy", "val_loss"):
            return keep.metric, keep.mode
        return "val_accuracy", "max"


class JobSpec(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    dataset: str = Field(min_length=1, max_length=100)
    dataset_options: SyntheticOptions | None = None
    model: ModelSpec = Field(
        default_factory=default_model,
        description="the network; left out: a small convnet on a CPU, or for a job bound for a "
        "GPU the GPU recipe's ResNet (the normalized spec in the answer says which)",
    )
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    acceleration: Literal["off", "auto"] | AccelerationSpec = "auto"
    device: DeviceName = "auto"
    exports: list[ExportFormat] = Field(default_factory=_default_exports, max_length=4)
    checkpoints: CheckpointPolicy | None = Field(
        default=None, description="which checkpoints are kept (left out: the newest ones)"
    )
    priority: int = Field(
        default=0,
        ge=-10,
        le=10,
        description="among this tenant's own queued jobs, a higher priority runs first; "
        "between tenants, the one with the fewest running jobs goes first",
    )

    # The request as given, before any default: a job bound for the GPU queue through
    # ``device: auto`` is validated again from it with the GPU defaults (``for_auto_device``).
    _given: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _fill_recipe_defaults(
        cls, data: Any, handler: ModelWrapValidatorHandler[JobSpec], info: ValidationInfo
    ) -> JobSpec:
        """Fill a left-out model with the default network for where the job runs, and the
        training fields left out with its architecture's recipe."""
        if not isinstance(data, dict):
            return handler(data)
        device = data.get("device", "auto")
        if device == "auto":  # the API passes where `device: auto` jobs go, when it knows
            device = (info.context or {}).get(AUTO_DEVICE_CONTEXT, "cpu")
        spec = handler(with_recipe_defaults(data, "cuda" if device == "cuda" else "cpu"))
        spec._given = copy.deepcopy(data)
        return spec

    def for_auto_device(self, auto_device: Literal["cpu", "cuda"]) -> JobSpec:
        """This spec as it runs where ``device: auto`` jobs go: on a GPU queue a spec that names
        no model gets the GPU recipe, so that the normalized spec a user sees is what runs."""
        given = self._given
        if self.device != "auto" or auto_device == "cpu" or given is None or "model" in given:
            return self
        return JobSpec.model_validate(given, context={AUTO_DEVICE_CONTEXT: auto_device})


# Validation context key: where a ``device: auto`` job runs ("cpu" unless the API says "cuda").
AUTO_DEVICE_CONTEXT = "auto_device"


def normalized(spec: JobSpec) -> dict[str, Any]:
    """The spec with every default filled in, as stored on the job and sent to workers."""
    data = spec.model_dump(mode="json")
    if data["name"] is None:
        data["name"] = f"{spec.model.arch}-{spec.dataset}"
    if data["dataset_options"] is None and spec.dataset == "synthetic":
        data["dataset_options"] = SyntheticOptions().model_dump(mode="json")
    return data
