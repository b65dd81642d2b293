"""A trained model, loaded from the files a job's download wrote: the network rebuilt from
model.json, its weights from model.safetensors (never a pickle), and the preprocessing it was
trained with, so ``predict`` takes the same raw inputs as the dataset held.

PyTorch is imported when a model is loaded, not by ``import taas``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from taas.worker.trainer.data import Preprocess


@dataclass(repr=False)
class Model:
    network: nn.Module  # on CPU, in eval mode; with test_time_flip, averaged with mirror images
    preprocess: Preprocess
    metadata: dict[str, Any]  # model.json: spec, input shape, classes, metrics, versions

    def __repr__(self) -> str:
        """One line a notebook can show: what the model is, not all of model.json."""
        accuracy = self.metadata.get("metrics", {}).get("test_accuracy")
        shown = "" if accuracy is None else f", test_accuracy={accuracy:.4f}"
        dataset = self.metadata.get("dataset", {}).get("name", "?")
        return (
            f"Model({self.metadata.get('arch', '?')} on {dataset}, input {self.input_shape}, "
            f"{self.num_classes} classes{shown})"
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.metadata["input_shape"]
        return channels, height, width

    @property
    def num_classes(self) -> int:
        return int(self.metadata["num_classes"])

    def predict_proba(self, inputs: np.ndarray[Any, Any] | torch.Tensor) -> torch.Tensor:
        """Class probabilities, (N, num_classes), for N raw inputs shaped like the dataset's
        (N, H, W) or (N, C, H, W), uint8 pixels or float32 values, as numpy or torch."""
        import torch

        if not getattr(inputs, "flags", None) or inputs.flags.writeable:  # type: ignore[union-attr]
            batch = torch.as_tensor(inputs)
        else:  # a read-only array (np.load with mmap, a view): torch would warn, so copy it
            batch = torch.tensor(inputs)
        channels, height, width = self.input_shape
        if batch.dim() == 3 and channels == 1:
            batch = batch.unsqueeze(1)
        if tuple(batch.shape[1:]) != (channels, height, width):
            raise ValueError(
                f"inputs of shape {tuple(batch.shape)}: the model takes (N, {channels}, {height}, "
                f"{width})" + (f" or (N, {height}, {width})" if channels == 1 else "")
            )
        with torch.inference_mode():
            logits = self.network(self.preprocess.apply(batch))
        return torch.softmax(logits.float(), dim=1)

    def predict(self, inputs: np.ndarray[Any, Any] | torch.Tensor) -> torch.Tensor:
        """The predicted class index of each input (see predict_proba for the shapes)."""
        return self.predict_proba(inputs).argmax(dim=1)


def load_model(folder: str | Path) -> Model:
    """The model in ``folder`` (what ``Client.download`` wrote: model.json and
    model.safetensors)."""
    from taas.worker.trainer.export import load_model as load_files

    network, preprocess, metadata = load_files(Path(folder))
    return Model(network, preprocess, metadata)
