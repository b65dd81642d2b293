"""A test split held out of the training split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from taas.worker.trainer.data import load_canonical, split_holdout, with_test_split
from tests.worker.trainer.data.writers import canonical_tensors, write_canonical


def test_split_holdout_is_seeded_disjoint_covering_and_sized() -> None:
    x = torch.arange(50).view(50, 1, 1, 1).float()  # each sample's value is its index
    y = torch.arange(50) % 5

    first = split_holdout(x, y, 0.2, seed=7)
    again = split_holdout(x, y, 0.2, seed=7)
    other = split_holdout(x, y, 0.2, seed=8)

    kept_x, kept_y, held_x, held_y = first
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(held_x, other[2])
    assert (len(kept_x), len(held_x)) == (40, 10)
    kept, held = set(kept_x.flatten().tolist()), set(held_x.flatten().tolist())
    assert kept.isdisjoint(held)
    assert kept | held == set(range(50))
    assert torch.equal(kept_y, (kept_x.flatten().long()) % 5)  # labels travel with samples
    assert torch.equal(held_y, (held_x.flatten().long()) % 5)
    assert kept_x.flatten().tolist() == sorted(kept)  # the original order is kept


def test_split_holdout_takes_each_class_in_proportion() -> None:
    y = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)

    _, _, _, held_y = split_holdout(torch.zeros(100, 1, 1, 1), y, 0.2, seed=0)

    assert torch.bincount(held_y, minlength=3).tolist() == [14, 4, 2]


@pytest.mark.parametrize(
    ("count", "fraction", "held"), [(2, 0.5, 1), (10, 0.01, 1), (10, 0.99, 9), (10, 0.25, 2)]
)
def test_split_holdout_holds_at_least_one_and_leaves_at_least_one(
    count: int, fraction: float, held: int
) -> None:
    kept_x, _, held_x, _ = split_holdout(
        torch.zeros(count, 1, 1, 1), torch.zeros(count, dtype=torch.int64), fraction, seed=0
    )

    assert (len(kept_x), len(held_x)) == (count - held, held)


@pytest.mark.parametrize(
    ("count", "fraction", "message"),
    [(1, 0.5, "need at least 2"), (10, 0.0, "fraction=0.0: "), (10, 1.0, "fraction=1.0: ")],
)
def test_split_holdout_refuses_impossible_splits(count: int, fraction: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_holdout(
            torch.zeros(count, 1, 1, 1), torch.zeros(count, dtype=torch.int64), fraction, seed=0
        )


def test_with_test_split_holds_out_only_when_there_is_no_test_split(tmp_path: Path) -> None:
    with_test = load_canonical(
        write_canonical(tmp_path / "a.safetensors", canonical_tensors()), "a"
    )
    without = load_canonical(
        write_canonical(tmp_path / "b.safetensors", canonical_tensors(test=False)), "b"
    )

    assert with_test_split(with_test, 0.25, seed=0) is with_test
    split = with_test_split(without, 0.25, seed=0)

    assert (split.info.train_size, split.info.test_size) == (9, 3)
    assert (len(split.train_y), len(split.test_y)) == (9, 3)
    assert split.test_x.shape == (3, 2, 5, 4)
    assert sorted(split.test_y.tolist()) == [0, 1, 2]  # one of each class
    expected = split_holdout(without.train_x, without.train_y, 0.25, seed=0)
    assert torch.equal(split.test_x, expected[2])
    assert torch.equal(split.train_x, expected[0])
