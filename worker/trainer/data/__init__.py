"""Datasets for the trainer: each split held whole as a tensor, normalized per batch later.

Built-in images stay uint8 until a batch is drawn: that is what lets a whole dataset live on the
device (Fashion-MNIST's 60k training images are 47 MB as uint8, four times that as float32).
Uploaded datasets arrive in a canonical safetensors file, as uint8 images or float32 values.

- ``dataset``: the Dataset every reader returns, and what the readers share.
- ``builtin``: a built-in dataset by name: found, downloaded when allowed, read by its format's
  reader: ``idx`` (MNIST, Fashion-MNIST), ``cifar`` (CIFAR-10), ``synthetic`` (generated).
- ``canonical``: an uploaded dataset, from the safetensors file the API writes.
- ``preprocess``: the per-channel normalization, measured on the training split.
- ``splits``: a test split held out of the training split when a dataset has none.

May import: torch, torchvision (to download), numpy, safetensors, ``taas.app.spec`` and
``taas.worker.datasets.files`` (where the files are, which the API answers without torch).
Callers import from this package; the names below are its whole interface.
"""

from taas.worker.datasets.files import DatasetUnavailable, available
from taas.worker.trainer.data.builtin import load_dataset
from taas.worker.trainer.data.canonical import dataset_info_of_canonical, load_canonical
from taas.worker.trainer.data.dataset import Dataset
from taas.worker.trainer.data.preprocess import Preprocess, preprocess_for
from taas.worker.trainer.data.splits import split_holdout, with_test_split

__all__ = [
    "Dataset",
    "DatasetUnavailable",
    "Preprocess",
    "available",
    "dataset_info_of_canonical",
    "load_canonical",
    "load_dataset",
    "preprocess_for",
    "split_holdout",
    "with_test_split",
]
