"""Index arithmetic for splits: seeded validation split, stratified subsets, imbalance."""

from __future__ import annotations

import torch


def val_count(val_size: int | float, n: int) -> int:
    """``val_size`` is a count (an integer) or a fraction (a float below 1)."""
    if isinstance(val_size, float) and val_size < 1:
        if val_size <= 0:
            raise ValueError(f"data.val_size fraction must be in (0, 1), got {val_size}")
        count = round(val_size * n)
        if count >= n:
            raise ValueError(f"data.val_size={val_size} of {n} samples leaves no training data")
        return count
    count = int(val_size)
    if count != val_size or not 0 <= count < n:
        raise ValueError(f"data.val_size must be a count in [0, {n}) or a fraction in (0, 1), "
                         f"got {val_size}")
    return count


def shuffled_split(n: int, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) index tensors from one seeded permutation. Keras' validation_split takes
    the unshuffled tail instead, which biases the split when the data is ordered."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


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
