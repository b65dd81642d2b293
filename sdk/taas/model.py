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

    def predict_proba(self, inputs: ArrayLike) -> Any:
        """Class probabilities, (N, num_classes), for raw inputs as the dataset held them: one
        sample or a batch, shaped (C, H, W), (H, W, C), (H, W) for one channel, or a flat row
        of features; uint8 pixels or float values, as a list, numpy or torch. Numpy (or a list)
        in, numpy out; torch in, torch out."""
        import torch

        batch = self._batch(inputs)
        with torch.inference_mode():
            logits = self.network(self.preprocess.apply(batch))
        probabilities = torch.softmax(logits.float(), dim=1)
        return probabilities if isinstance(inputs, torch.Tensor) else probabilities.numpy()

    def predict(self, inputs: ArrayLike) -> Any:
        """The predicted class index of each input (see predict_proba for what it takes)."""
        return self.predict_proba(inputs).argmax(1)  # numpy's axis, torch's dim

    def _batch(self, inputs: ArrayLike) -> torch.Tensor:
        """(N, C, H, W) from what the caller passed, refused with what the model takes."""
        import torch

        if getattr(inputs, "flags", None) is not None and not inputs.flags.writeable:
            batch = torch.tensor(inputs)  # read-only (np.load with mmap, a view): torch would warn
        else:
            batch = torch.as_tensor(inputs)
        if batch.dtype == torch.bool or batch.is_complex():
            raise ValueError(f"inputs are {batch.dtype}: pass pixel or feature values")
        for candidate in (batch, batch.unsqueeze(0)):  # a batch, else one sample
            converted = _to_channels_first(candidate, self.input_shape)
            if converted is not None:
                self._refuse_rescaled(converted)
                return converted
        channels, height, width = self.input_shape
        one_channel = f", ({height}, {width})" if channels == 1 else ""
        raise ValueError(
            f"inputs of shape {tuple(batch.shape)}: the model takes samples shaped "
            f"({channels}, {height}, {width}), ({height}, {width}, {channels}){one_channel} or "
            f"{channels * height * width} values in a row, one sample or a batch of them"
        )

    def _refuse_rescaled(self, batch: torch.Tensor) -> None:
        """A model of uint8 pixels takes them as they were (0-255); floats scaled to 0-1 would
        look almost black to it and be predicted wrong without a word."""
        if self.preprocess.scale == 1.0 or not batch.is_floating_point() or batch.numel() == 0:
            return
        if float(batch.min()) >= 0.0 and 0.0 < float(batch.max()) <= 1.0:
            raise ValueError(
                "inputs are floats between 0 and 1, but the model was trained on 0-255 pixel "
                "values and scales them itself: pass the pixels as they are (multiply by 255)"
            )


ArrayLike = Any  # numpy arrays, torch tensors, nested lists: anything torch.as_tensor reads


def _to_channels_first(
    batch: torch.Tensor, sample_shape: tuple[int, int, int]
) -> torch.Tensor | None:
    """``batch`` as (N, C, H, W) when its samples are in one of the layouts an upload may hold
    them in (the same the dataset ingest accepts), else None."""
    channels, height, width = sample_shape
    held = tuple(batch.shape[1:])
    if held == (channels, height, width):
        return batch
    if held == (height, width, channels):
        return batch.permute(0, 3, 1, 2).contiguous()
    if held == (height, width) and channels == 1:
        return batch.unsqueeze(1)
    if held == (channels * height * width,):
        return batch.reshape(len(batch), channels, height, width)
    return None


def load_model(folder: str | Path) -> Model:
    """The model in ``folder`` (what ``Client.download`` wrote: model.json and
    model.safetensors)."""
    from taas.worker.trainer.export import METADATA_FILE, WEIGHTS_FILE
    from taas.worker.trainer.export import load_model as load_files

    path = Path(folder).expanduser()
    if path.name == METADATA_FILE and path.is_file():  # the file named instead of its folder
        path = path.parent
    missing = [name for name in (METADATA_FILE, WEIGHTS_FILE) if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"no {' or '.join(missing)} in {str(path)!r}: a succeeded job's download holds them "
            "(client.download(job_id, folder)); a failed or cancelled job has no model"
        )
    network, preprocess, metadata = load_files(path)
    return Model(network, preprocess, metadata)
