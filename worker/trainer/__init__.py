"""The PyTorch trainer: pure torch, reached by the platform only through a TrainContext."""

from worker.trainer.data import load_dataset
from worker.trainer.export import load_model
from worker.trainer.loop import train
from worker.trainer.networks import build_network

__all__ = ["build_network", "load_dataset", "load_model", "train"]
