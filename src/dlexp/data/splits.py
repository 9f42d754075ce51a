"""Index arithmetic for splits: seeded validation split, stratified subsets, imbalance."""

from __future__ import annotations

import torch


def val_count(val_size: int | float, n: int, key: str = "val_size") -> int:
    """``val_size`` is a count (an integer) or a fraction (a float below 1); ``key`` names the
    setting in errors."""
    if isinstance(val_size, float) and val_size != 0 and val_size < 1:  # 0.0 is the count 0
        if val_size <= 0:
            raise ValueError(f"data.{key} fraction must be in (0, 1), got {val_size}")
        count = round(val_size * n)
        if count >= n:
            raise ValueError(f"data.{key}={val_size} of {n} samples leaves no training data")
        return count
    count = int(val_size)
    if count != val_size or not 0 <= count < n:
        raise ValueError(f"data.{key} must be a count in [0, {n}) or a fraction in (0, 1), "
                         f"got {val_size}")
    return count


def shuffled_split(n: int, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) index tensors from one seeded permutation. Keras' validation_split takes
    the unshuffled tail instead, which biases the split when the data is ordered."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def stratified_split(labels: torch.Tensor, n_out: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out) positions into ``labels``, ``n_out`` held out with each class in
    proportion to its size (largest remainders), so a small class is not left out of the
    held-out part by chance; every class keeps at least one sample."""
    classes, counts = labels.unique(return_counts=True)
    quota = counts.double() * n_out / max(len(labels), 1)
    take = quota.floor().long()
    short = n_out - int(take.sum())
    take[(quota - take).argsort(descending=True)[:short]] += 1
    take = torch.minimum(take, counts - 1)
    g = torch.Generator().manual_seed(seed)
    held = [(labels == c).nonzero().squeeze(1)[torch.randperm(int(n), generator=g)[:k]]
            for c, n, k in zip(classes.tolist(), counts.tolist(), take.tolist(), strict=True)]
    out = torch.cat(held).sort().values if held else labels.new_zeros(0, dtype=torch.long)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[out] = False
    return mask.nonzero().squeeze(1), out


def fold_split(labels: torch.Tensor, folds: int, fold: int, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) positions of fold ``fold`` of a seeded, stratified ``folds``-fold
    split: each class is shuffled once and dealt round-robin, so the folds partition the data,
    each class's share differs by at most one between folds, and every fold but a class's
    smallest holds some of it."""
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"data.folds must be a whole number >= 2, got {folds}")
    if not isinstance(fold, int) or not 0 <= fold < folds:
        raise ValueError(f"data.fold must be in 0..{folds - 1} for data.folds={folds}, "
                         f"got {fold}")
    if len(labels) < folds:
        raise ValueError(f"data.folds={folds} needs at least {folds} samples, got {len(labels)}")
    g = torch.Generator().manual_seed(seed)
    which = torch.empty(len(labels), dtype=torch.long)
    start = 0  # each class continues the deal where the last one ended: folds stay even
    for c in labels.unique().tolist():
        pos = (labels == c).nonzero().squeeze(1)
        pos = pos[torch.randperm(len(pos), generator=g)]
        which[pos] = (torch.arange(len(pos)) + start) % folds
        start = (start + len(pos)) % folds
    held = which == fold
    return (~held).nonzero().squeeze(1), held.nonzero().squeeze(1)


def stratified_subset(labels: torch.Tensor, per_class_total: int, seed: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``per_class_total`` positions spread evenly over the classes present.

    Returns (chosen, rest) as positions into ``labels``. Classes too small give all they have.
    """
    classes = labels.unique()
    base, extra = divmod(per_class_total, len(classes))
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for i, c in enumerate(classes.tolist()):
        pos = (labels == c).nonzero().squeeze(1)
        k = min(len(pos), base + (1 if i < extra else 0))
        chosen.append(pos[torch.randperm(len(pos), generator=g)[:k]])
    picked = torch.cat(chosen).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[picked] = False
    return picked, mask.nonzero().squeeze(1)


def labeled_and_pool(labels: torch.Tensor, train_idx: torch.Tensor, num_labeled: int | None,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labeled, unlabeled pool) indices out of ``train_idx``: a stratified ``num_labeled``
    subset and the rest, or everything labeled when ``num_labeled`` is None."""
    if num_labeled is None:
        return train_idx, train_idx[:0]
    classes = len(labels[train_idx].unique())
    if not classes <= num_labeled <= len(train_idx):
        raise ValueError(f"data.num_labeled must be in [{classes}, {len(train_idx)}] (at least "
                         f"one label per class), got {num_labeled}")
    chosen, rest = stratified_subset(labels[train_idx], num_labeled, seed)
    return train_idx[chosen], train_idx[rest]


def checked_pseudo_labels(indices: torch.Tensor, labels: torch.Tensor, pool_size: int,
                          num_classes: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Validated CPU copies of pseudo-labels for pool positions ``indices``; None when empty."""
    indices = torch.as_tensor(indices, dtype=torch.long).flatten().cpu().clone()
    labels = torch.as_tensor(labels, dtype=torch.long).flatten().cpu().clone()
    if len(indices) != len(labels):
        raise ValueError(f"{len(indices)} indices but {len(labels)} pseudo-labels")
    for values, high, what in ((indices, pool_size, "indices"), (labels, num_classes, "labels")):
        if len(values) and (values.min() < 0 or values.max() >= high):
            raise ValueError(f"pseudo-label {what} must be in [0, {high})")
    return (indices, labels) if len(indices) else None


def imbalance(labels: torch.Tensor, ratio: float, seed: int) -> torch.Tensor:
    """Positions kept for an exponentially imbalanced class profile: class ``k`` of ``C`` keeps
    ``ratio ** (k / (C - 1))`` of its samples, so the last class keeps ``ratio`` of them."""
    if not 0 < ratio <= 1:
        raise ValueError(f"data.imbalance must be in (0, 1], got {ratio}")
    classes = labels.unique().tolist()
    g = torch.Generator().manual_seed(seed)
    keep = []
    for k, c in enumerate(classes):
        pos = (labels == c).nonzero().squeeze(1)
        frac = ratio ** (k / max(len(classes) - 1, 1))
        keep.append(pos[torch.randperm(len(pos), generator=g)[: max(1, round(frac * len(pos)))]])
    return torch.cat(keep).sort().values
