"""The PyTorch trainer: pure torch, reached by the platform only through a TrainContext."""

from taas.worker.trainer.data import load_dataset
from taas.worker.trainer.export import load_model
from taas.worker.trainer.loop import train
from taas.worker.trainer.networks import build_network

__all__ = ["build_network", "load_dataset", "load_model", "train"]
