"""MNISTDataModule's semi-supervised side: pseudo labels and the labeled + unlabeled stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.utilities import CombinedLoader

from dlexp.data.mnist import MNISTDataModule


def _dm(root: Path, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(root=str(root), download=False, val_size=100, batch_size=10,
                         num_labeled=50, **kwargs)
    dm.setup("fit")
    return dm


def test_pseudo_labels_join_the_training_set_and_replace_earlier_ones(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist)
    assert sum(len(b[1]) for b in dm.train_dataloader()) == 50
    idx, labels = torch.tensor([3, 0, 7]), torch.tensor([1, 2, 3])
    dm.set_pseudo_labels(idx, labels)
    x, y = (torch.cat(t) for t in zip(*dm.train_dataloader(), strict=True))
    assert len(y) == 53
    pool_x = dm.unlabeled_set[0][idx]
    for i in range(3):  # each pseudo-labelled image comes with its pseudo label
        hits = (x == pool_x[i]).flatten(1).all(1).nonzero().squeeze(1)
        assert labels[i] in y[hits]
    dm.set_pseudo_labels(torch.tensor([5]), torch.tensor([9]))
    assert sum(len(b[1]) for b in dm.train_dataloader()) == 51
    dm.set_pseudo_labels(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    assert dm.pseudo_labels is None


@pytest.mark.parametrize(("idx", "labels"), [([0, 1], [1]), ([10_000], [1]), ([0], [10])])
def test_bad_pseudo_labels_are_refused(tiny_mnist: Path, idx: list, labels: list) -> None:
    with pytest.raises(ValueError, match="pseudo-label"):
        _dm(tiny_mnist).set_pseudo_labels(torch.tensor(idx), torch.tensor(labels))


def test_unlabeled_ratio_serves_both_streams(tiny_mnist: Path) -> None:
    dm = _dm(tiny_mnist, unlabeled_ratio=3)
    loader = dm.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    batches = [b for b, _, _ in loader]  # CombinedLoader yields (batch, idx, loader idx)
    pool = len(dm.unlabeled_set[1])
    assert len(batches) == -(-pool // 30)  # the pool is read once, the labeled set cycles
    batch = batches[0]
    (xl, yl), (xu, yu) = batch["labeled"], batch["unlabeled"]
    assert len(yl) == 10 and len(yu) == 30 and xl.dtype == xu.dtype == torch.uint8
    out = dm.on_after_batch_transfer(batch, 0)  # both normalised, labels untouched
    assert out["unlabeled"][0].dtype == torch.float32 and torch.equal(out["unlabeled"][1], yu)
    with pytest.raises(ValueError, match="unlabeled_ratio"):
        MNISTDataModule(unlabeled_ratio=0)
