"""Index arithmetic for splits: seeded validation split, stratified subsets, imbalance.
Labels are class indices (N,), or multi-hot rows (N, C) for multi-label data, which the
stratified split and the k-fold split stratify by iterative stratification
(:func:`iterative_split`)."""

from __future__ import annotations

import numpy as np
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
    held-out part by chance; every class keeps at least one sample. Multi-hot labels:
    :func:`iterative_split` (each label in proportion, rare labels first)."""
    if labels.dim() == 2:
        which = iterative_split(labels, [len(labels) - n_out, n_out], seed)
        return (which == 0).nonzero().squeeze(1), (which == 1).nonzero().squeeze(1)
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
    if labels.dim() == 2:  # multi-label: folds as even as the deal's, stratified per label
        sizes = [len(labels) // folds + (k < len(labels) % folds) for k in range(folds)]
        held = iterative_split(labels, sizes, seed) == fold
        return (~held).nonzero().squeeze(1), held.nonzero().squeeze(1)
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


def iterative_split(labels: torch.Tensor, sizes: list[int], seed: int) -> torch.Tensor:
    """The part (0..len(sizes)-1) of each multi-hot row, part k getting exactly ``sizes[k]``
    rows, by iterative stratification (Sechidis et al., 2011): the label with the fewest rows
    left is dealt first, each of its rows to the part that still wants most of that label
    (ties: the part wanting most rows, then the seeded order), so rare labels are spread, and a
    label's first rows go to the largest part (training). Rows without labels fill the rest."""
    y = labels.detach().cpu().numpy() > 0.5
    n = len(y)
    rng = np.random.default_rng(seed)
    share = np.asarray(sizes, dtype=np.float64) / max(n, 1)
    wants = share[:, None] * y.sum(0)[None, :]  # (parts, labels) still wanted
    room = np.asarray(sizes, dtype=np.int64).copy()
    which = np.full(n, -1, dtype=np.int64)
    left = y.copy()
    order = rng.permutation(n)
    while left.any():
        counts = left.sum(0).astype(np.float64)
        counts[counts == 0] = np.inf
        label = int(np.flatnonzero(counts == counts.min())[rng.integers((counts == counts.min())
                                                                        .sum())])
        for row in order[left[order, label]]:
            open_ = room > 0
            score = np.where(open_, wants[:, label], -np.inf)
            best = np.flatnonzero(score == score.max())
            if len(best) > 1:
                best = best[room[best] == room[best].max()]
            part = int(best[rng.integers(len(best))])
            which[row], room[part] = part, room[part] - 1
            wants[part] -= y[row]
            left[row] = False
    for row in order[which[order] == -1]:  # unlabeled rows: wherever room is left
        part = int(np.argmax(room))
        which[row], room[part] = part, room[part] - 1
    return torch.from_numpy(which)


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
    if labels.dim() == 2:
        raise ValueError("data.num_labeled (the semi-supervised methods) needs single-label "
                         "data; drop it for multi-label data")
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
