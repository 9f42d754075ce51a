"""Seeded validation split, stratified subsets and the imbalance profile."""

from __future__ import annotations

import pytest
import torch

from dlexp.data import splits
from dlexp.data.splits import imbalance, shuffled_split, stratified_subset, val_count


@pytest.mark.parametrize(
    ("val_size", "n", "expected"),
    [(5000, 60000, 5000), (0, 100, 0), (99, 100, 99), (0.1, 60000, 6000), (0.25, 10, 2),
     (0.5, 7, 4), (5000.0, 60000, 5000), (1.0, 10, 1), (0.0, 10, 0)],
)
def test_val_count(val_size: float, n: int, expected: int) -> None:
    assert val_count(val_size, n) == expected


@pytest.mark.parametrize(
    ("val_size", "n", "match"),
    [(-0.1, 100, "fraction must be in"),
     (100, 100, "count in"), (150, 100, "count in"), (-5, 100, "count in"),
     (12.5, 100, "count in"), (0.999, 100, "leaves no training data")],
)
def test_val_count_errors(val_size: float, n: int, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        val_count(val_size, n)
    assert "data.val_size" in str(err.value)


def test_shuffled_split_partitions_everything() -> None:
    train, val = shuffled_split(1000, 150, seed=3)
    assert len(train) == 850 and len(val) == 150
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_shuffled_split_is_seeded() -> None:
    a, b = shuffled_split(1000, 100, seed=0), shuffled_split(1000, 100, seed=0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = shuffled_split(1000, 100, seed=1)
    assert not torch.equal(a[1], c[1])


def test_shuffled_split_is_not_the_tail() -> None:
    _, val = shuffled_split(1000, 100, seed=0)
    assert not torch.equal(val, torch.arange(900, 1000))
    assert val.min() < 500  # drawn from the whole range


def test_shuffled_split_ignores_global_rng() -> None:
    torch.manual_seed(1)
    a = shuffled_split(100, 10, seed=5)[1]
    torch.manual_seed(2)
    assert torch.equal(a, shuffled_split(100, 10, seed=5)[1])


def test_empty_validation() -> None:
    train, val = shuffled_split(10, 0, seed=0)
    assert len(val) == 0 and train.tolist() == list(range(10))


def _labels(per_class: list[int]) -> torch.Tensor:
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]


def test_stratified_subset_equal_per_class() -> None:
    y = _labels([50] * 10)
    chosen, rest = stratified_subset(y, 100, seed=0)
    assert torch.bincount(y[chosen], minlength=10).tolist() == [10] * 10
    assert len(rest) == 400
    assert set(chosen.tolist()).isdisjoint(rest.tolist())
    assert sorted(chosen.tolist() + rest.tolist()) == list(range(500))


def test_stratified_subset_spreads_the_remainder() -> None:
    y = _labels([30] * 4)
    chosen, _ = stratified_subset(y, 10, seed=0)
    counts = torch.bincount(y[chosen], minlength=4)
    assert counts.sum() == 10 and counts.max() - counts.min() <= 1


def test_stratified_subset_small_class_gives_all() -> None:
    y = _labels([3, 20, 20])
    chosen, _ = stratified_subset(y, 15, seed=0)
    assert torch.bincount(y[chosen], minlength=3).tolist() == [3, 5, 5]


def test_stratified_subset_seeded() -> None:
    y = _labels([40] * 5)
    assert torch.equal(stratified_subset(y, 20, 0)[0], stratified_subset(y, 20, 0)[0])
    assert not torch.equal(stratified_subset(y, 20, 0)[0], stratified_subset(y, 20, 1)[0])


def test_imbalance_profile() -> None:
    y = _labels([1000] * 10)
    keep = imbalance(y, 0.1, seed=0)
    counts = torch.bincount(y[keep], minlength=10)
    expected = [round(1000 * 0.1 ** (k / 9)) for k in range(10)]
    assert counts.tolist() == expected
    assert counts[0] == 1000 and counts[-1] == 100  # last class keeps ~ratio
    assert (counts[:-1] >= counts[1:]).all()
    assert len(set(keep.tolist())) == len(keep) and torch.equal(keep, keep.sort().values)


def test_imbalance_ratio_one_keeps_everything() -> None:
    y = _labels([20, 30])
    assert imbalance(y, 1.0, seed=0).tolist() == list(range(50))


def test_imbalance_keeps_at_least_one() -> None:
    y = _labels([100, 5])
    counts = torch.bincount(y[imbalance(y, 0.01, seed=0)], minlength=2)
    assert counts.tolist() == [100, 1]


def test_imbalance_seeded() -> None:
    y = _labels([100] * 3)
    assert torch.equal(imbalance(y, 0.3, 0), imbalance(y, 0.3, 0))
    assert not torch.equal(imbalance(y, 0.3, 0), imbalance(y, 0.3, 1))


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5])
def test_imbalance_bad_ratio(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"data.imbalance must be in \(0, 1\]"):
        imbalance(_labels([10, 10]), ratio, 0)


def test_fold_split_partitions_and_stratifies() -> None:
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 3)
    held = [splits.fold_split(labels, 3, k, seed=0)[1] for k in range(3)]
    assert sorted(torch.cat(held).tolist()) == list(range(len(labels)))
    for k in range(3):
        train, out = splits.fold_split(labels, 3, k, seed=0)
        assert sorted(train.tolist() + out.tolist()) == list(range(len(labels)))
        counts = torch.bincount(labels[out], minlength=3).tolist()
        assert abs(counts[0] - 10 / 3) < 1 and abs(counts[1] - 5 / 3) < 1 and counts[2] == 1
    assert sorted(len(h) for h in held) == [6, 6, 6]


def test_fold_split_is_seeded() -> None:
    labels = torch.arange(40) % 4
    first = splits.fold_split(labels, 5, 2, 7)[1]
    assert torch.equal(first, splits.fold_split(labels, 5, 2, 7)[1])
    assert not torch.equal(splits.fold_split(labels, 5, 2, 7)[1],
                           splits.fold_split(labels, 5, 2, 8)[1])


@pytest.mark.parametrize(("folds", "fold", "match"), [(1, 0, "folds must"), (3, 3, "fold must"),
                                                      (3, -1, "fold must"), (50, 0, "at least")])
def test_fold_split_errors(folds: int, fold: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        splits.fold_split(torch.arange(10) % 2, folds, fold, 0)
