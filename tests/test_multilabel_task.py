"""The multi-label task on known tensors: BCE (and its balanced pos_weight), macro F1, mAP and
exact-match accuracy against hand-computed values, the training statistics against
torchmetrics, the loss/data checks of the builders, and the per-label figure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.classification import MultilabelExactMatch, MultilabelF1Score

from dlexp.builders import build_loss
from dlexp.callbacks.evaluation_figures import label_confusion_figure
from dlexp.errors import ConfigError
from dlexp.losses import BinaryCrossEntropy, positive_weights
from dlexp.task import ClassificationTask, MultilabelTrainStats

# three samples, two labels; at 0.5 the predictions are [1,0], [1,1], [0,0]
PROBS = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])
TARGET = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
LOGITS = torch.log(PROBS / (1 - PROBS))
# label 0: tp 1, fp 1, fn 1 -> F1 1/2; label 1: tp 1, fn 1 -> F1 2/3
F1 = (1 / 2 + 2 / 3) / 2
# label 0 ranks +,-,+ -> AP (1 + 2/3) / 2; label 1 ranks +,+,- -> AP 1
MAP = ((1 + 2 / 3) / 2 + 1) / 2
EXACT = 1 / 3  # only the first sample has its label set exactly


def _task(**kwargs) -> ClassificationTask:
    return ClassificationTask(nn.Identity(), torch.optim.SGD, num_classes=2, multilabel=True,
                              **kwargs)


def test_bce_by_hand_and_balanced_pos_weight() -> None:
    loss = BinaryCrossEntropy()(torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert float(loss) == pytest.approx(math.log(2))
    weights = positive_weights("balanced", torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1.]]))
    assert weights.tolist() == pytest.approx([1 / 3, 1.0])  # negatives / positives
    weighted = BinaryCrossEntropy(torch.tensor([3.0, 1.0]))(torch.zeros(1, 2),
                                                            torch.tensor([[1.0, 1.0]]))
    assert float(weighted) == pytest.approx(2 * math.log(2))  # (3 ln2 + ln2) / 2
    assert positive_weights("balanced", torch.zeros(0, 2)) is None
    with pytest.raises(ValueError, match="'balanced', a list or null"):
        positive_weights("heavy", None)


def test_validation_metrics_match_hand_computed_values() -> None:
    task = _task()
    task.validation_step((LOGITS[:2], TARGET[:2]), 0)  # two batches: states accumulate
    task.validation_step((LOGITS[2:], TARGET[2:]), 1)
    found = {k: float(v) for k, v in task.val_metrics.compute().items()}
    assert found == pytest.approx({"val/f1": F1, "val/map": MAP, "val/acc": EXACT})
    assert isinstance(task.criterion, BinaryCrossEntropy)


def test_threshold_moves_f1_and_predict_gives_sigmoids() -> None:
    task = _task(threshold=0.15)  # now every probability but 0.1 is over it
    task.validation_step((LOGITS, TARGET), 0)
    # label 0: tp 1, fp 1, fn 1 -> 1/2; label 1: tp 2, fp 1 -> 4/5
    assert float(task.val_metrics.compute()["val/f1"]) == pytest.approx((1 / 2 + 4 / 5) / 2)
    assert torch.allclose(task.predict_step((LOGITS, TARGET), 0), PROBS)
    with pytest.raises(ValueError, match=r"data.threshold must be in \(0, 1\)"):
        _task(threshold=1.0)


def test_train_stats_agree_with_torchmetrics() -> None:
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(50, 4, generator=g), (torch.rand(50, 4, generator=g) < 0.3)
    target[:, 3] = False  # a label never present: torchmetrics counts its F1 as 0
    logits[:, 3] = -5
    stats = MultilabelTrainStats(4, 0.5)
    for part in range(0, 50, 16):
        stats.update(logits[part:part + 16], target[part:part + 16].float(), torch.tensor(0.7))
    out = stats.compute()
    probs = logits.sigmoid()
    f1 = MultilabelF1Score(4, threshold=0.5, average="macro")(probs, target.long())
    exact = MultilabelExactMatch(4, threshold=0.5)(probs, target.long())
    assert float(out["train/f1"]) == pytest.approx(float(f1))
    assert float(out["train/acc"]) == pytest.approx(float(exact))
    assert float(out["train/loss_epoch"]) == pytest.approx(0.7)


def test_training_step_uses_bce() -> None:
    task = _task()
    loss = task.training_step((LOGITS, TARGET), 0)
    expected = nn.functional.binary_cross_entropy_with_logits(LOGITS, TARGET)
    assert float(loss) == pytest.approx(float(expected))
    assert float(task.train_stats.compute()["train/acc"]) == pytest.approx(EXACT)


class _Data:
    def train_targets(self) -> torch.Tensor:
        return TARGET

    def class_counts(self) -> torch.Tensor:
        return torch.tensor([2, 1])


def test_loss_and_data_must_agree() -> None:
    bce = {"_target_": "dlexp.losses.BinaryCrossEntropy", "pos_weight": "balanced"}
    ce = {"_target_": "dlexp.losses.CrossEntropy", "label_smoothing": 0.0,
          "class_weights": None}
    loss = build_loss(bce, _Data(), multilabel=True)
    assert loss.pos_weight.tolist() == pytest.approx([1 / 2, 1 / 2])
    with pytest.raises(ConfigError, match="multi-label .*: use loss=bce"):
        build_loss(ce, _Data(), multilabel=True)
    with pytest.raises(ConfigError, match="loss=bce is for multi-label data"):
        build_loss(bce, _Data(), multilabel=False)


def test_per_label_confusion_figure() -> None:
    matrices = np.array([[[5, 1], [2, 3]], [[0, 0], [4, 7]]])  # (C, 2, 2): [[tn, fp], [fn, tp]]
    fig = label_confusion_figure(matrices, ["cat", "dog"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["5", "1", "2", "3", "0", "0", "4", "7"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["cat", "dog"]
