"""A test split held out of the training split, for uploads that come without one."""

from __future__ import annotations

import torch

from taas.worker.trainer.data.dataset import Dataset


def split_holdout(
    x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(kept_x, kept_y, held_x, held_y): round(fraction * N) samples held out (at least 1, and
    leaving at least 1), each class in proportion to its size as near as whole samples allow.

    x (N, ...) and y (N,) int64 on the CPU. The same arguments give the same split every call;
    both parts keep the samples' original order.
    """
    count = len(y)
    if count < 2:
        raise ValueError(f"cannot hold out part of {count} sample(s): need at least 2")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction!r}: expected 0 < fraction < 1")
    held_count = min(max(round(fraction * count), 1), count - 1)
    held = torch.zeros(count, dtype=torch.bool)  # (N,)
    held[_stratified_order(y, seed)[:held_count]] = True
    return x[~held], y[~held], x[held], y[held]


def _stratified_order(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded permutation of range(N) whose every prefix holds each class in proportion.

    Taken in a random order, the i-th sample of a class of size n sorts at (i + 0.5) / n: a
    prefix of k samples then holds about k * n / N of that class.
    """
    shuffled = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))  # (N,)
    labels = y[shuffled]  # (N,)
    sizes = torch.bincount(labels)  # (K,)
    grouped = torch.sort(labels, stable=True).indices  # (N,) by class, random within a class
    class_start = torch.cumsum(sizes, 0) - sizes  # (K,) where each class begins in `grouped`
    rank = torch.empty_like(labels)  # (N,) position within its class
    rank[grouped] = torch.arange(len(y)) - class_start[labels[grouped]]
    position = (rank.to(torch.float64) + 0.5) / sizes[labels].to(torch.float64)
    return shuffled[torch.sort(position, stable=True).indices]


def with_test_split(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """`dataset` itself when it has a test split; else one whose test split is a seeded,
    stratified holdout of `fraction` of its training split (see split_holdout)."""
    if len(dataset.test_y) > 0:
        return dataset
    train_x, train_y, test_x, test_y = split_holdout(
        dataset.train_x, dataset.train_y, fraction, seed
    )
    sizes = {"train_size": len(train_y), "test_size": len(test_y)}
    return Dataset(dataset.info.model_copy(update=sizes), train_x, train_y, test_x, test_y)
