"""FixMatchTask: the loss on labeled + unlabeled batches, the logged pseudo-label quality, and a
run end to end on generated digits."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import FAST, TINY_DATA, compose_train
from torch import nn

from dlexp.methods.fixmatch import FixMatchTask
from dlexp.train import train


class Fixed(nn.Module):
    """A 'network' whose logits are the first pixels of each image: outputs are known."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3] * self.scale


def _task(threshold: float) -> FixMatchTask:
    # no augmentation: views equal the input, so the weak prediction is the strong target
    return FixMatchTask(Fixed(), torch.optim.SGD, num_classes=3, threshold=threshold,
                        augment={"max_shift": 0.0, "num_ops": 0, "cutout_size": 0.0})


def _batch() -> dict:
    xu = torch.zeros(4, 1, 2, 2)
    xu[0, 0, 0, 0] = 10.0  # confident: class 0
    xu[1, 0, 0, 1] = 10.0  # confident: class 1 (its true label is 2: a wrong pseudo label)
    xl = torch.zeros(2, 1, 2, 2)
    return {"labeled": (xl, torch.tensor([0, 1])), "unlabeled": (xu, torch.tensor([0, 2, 1, 1]))}


def test_mask_keeps_confident_predictions_and_scores_them() -> None:
    task = _task(threshold=0.95)
    loss = task.training_step(_batch(), 0)
    sup = torch.log(torch.tensor(3.0))  # uniform logits on the labeled images
    assert loss.item() > sup.item()  # the two confident samples add their (small) loss
    seen, accepted, checkable, correct = task.pseudo_sums.tolist()
    assert (seen, accepted, checkable, correct) == (4, 2, 2, 1)


def test_threshold_one_ignores_the_unlabeled_batch() -> None:
    task = _task(threshold=1.0)
    loss = task.training_step(_batch(), 0)
    torch.testing.assert_close(loss, torch.log(torch.tensor(3.0)))
    assert task.pseudo_sums[1] == 0


def test_plain_batches_are_refused() -> None:
    with pytest.raises(TypeError, match="unlabeled_ratio"):
        _task(0.9).training_step((torch.zeros(2, 1, 2, 2), torch.tensor([0, 1])), 0)


def test_fixmatch_runs_end_to_end(tmp_path: Path, tiny_mnist: Path) -> None:
    cfg = compose_train([*FAST, *TINY_DATA, "method=fixmatch", "data.num_labeled=50",
                         "method.unlabeled_ratio=2", "method.task.threshold=0.0",
                         "trainer.max_epochs=1", "logger=csv",
                         "trainer.precision=bf16-mixed", "model.blocks=[{filters: 8}]",
                         "model.dense=[32]"], tmp_path, tiny_mnist)
    metrics = train(cfg)
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["global_step"] == -(-450 // 64)  # the pool once per epoch
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/mask_rate")]
    # threshold 0 accepts every unlabeled sample; the pool's labels are known here
    assert len(rows) == 1 and float(rows[0]["train/mask_rate"]) == 1.0
    assert 0.0 < float(rows[0]["train/pseudo_acc"]) < 1.0
