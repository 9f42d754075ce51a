"""FixMatch (Sohn et al. 2020): supervised cross-entropy on labeled batches plus, on unlabeled
batches, cross-entropy of strong views against the weak view's confident predictions."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dlexp.data.augment import check_view_options, strong_view, weak_view
from dlexp.task import ClassificationTask


class FixMatchTask(ClassificationTask):
    """Trains on ``{"labeled": (x, y), "unlabeled": (x, y_hidden)}`` batches.

    ``y_hidden`` (the pool's true labels) never enters the loss: it only measures the pseudo
    labels (``train/pseudo_acc``). ``augment`` holds the view options of
    :func:`dlexp.data.augment.strong_view` (images: shift, RandAugment, cutout; text: token
    dropout and swaps), chosen by the batch type, so the task works for any modality.
    """

    def __init__(self, *args: Any, threshold: float = 0.95, unlabeled_weight: float = 1.0,
                 augment: dict | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= threshold <= 1:
            raise ValueError(f"method.task.threshold must be in [0, 1], got {threshold}")
        self.threshold, self.unlabeled_weight = threshold, unlabeled_weight
        self.augment = dict(augment or {})
        check_view_options(self.augment, "method.task.augment")
        # [unlabeled seen, accepted, accepted with a known label, accepted and correct]: epoch
        # sums. Not a buffer, so weight averaging (EMA) and checkpoints leave it alone
        self.pseudo_sums = torch.zeros(4)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if not isinstance(batch, dict):
            raise TypeError("method=fixmatch needs labeled and unlabeled batches: set "
                            "data.unlabeled_ratio (the method config does)")
        (xl, yl), (xu, yu) = batch["labeled"], batch["unlabeled"]
        weak, strong = self._views(xu)
        with torch.no_grad():
            probs = self(weak).float().softmax(-1)
        confidence, pseudo = probs.max(-1)
        mask = (confidence >= self.threshold).float()
        logits_l, logits_s = self._forward_pair(xl, strong)
        sup = self.criterion(logits_l, yl)
        unsup = (F.cross_entropy(logits_s.float(), pseudo, reduction="none") * mask).mean()
        loss = sup + self.unlabeled_weight * unsup
        penalty = None
        if self.penalty is not None:
            penalty = self.penalty(self.net)
            loss = loss + penalty
        self.train_stats.update(logits_l.detach(), yl, loss, penalty)
        known = (yu >= 0).float()  # -1: a pool sample whose true label nobody knows
        self.pseudo_sums = self.pseudo_sums.to(mask.device) + torch.stack(
            [mask.new_tensor(len(mask)), mask.sum(), (mask * known).sum(),
             (mask * (pseudo == yu).float()).sum()])
        self.log_step(loss, **{"train/unsup_loss_step": unsup, "train/mask_rate_step": mask.mean()})
        return loss

    def _views(self, xu: Any) -> tuple[Any, Any]:
        """Augment in fp32 whatever the precision: grid sampling and intensity maths in bf16
        would quantise the images."""
        with torch.autocast(self.device.type, enabled=False):
            opts = {"max_shift": self.augment.get("max_shift", 0.125)}
            return weak_view(xu, None, **opts), strong_view(xu, None, **self.augment)

    def _forward_pair(self, xl: Any, xs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over labeled and strong images together (BatchNorm sees both); token
        batches are padded to different lengths, so they take two passes."""
        if isinstance(xl, torch.Tensor):
            logits = self(torch.cat([xl, xs]))
            return logits[: len(xl)], logits[len(xl):]
        return self(xl), self(xs)

    def on_train_epoch_end(self) -> None:
        seen, accepted, checkable, correct = self.pseudo_sums.tolist()
        self.log_dict({"train/mask_rate": accepted / max(seen, 1),
                       "train/pseudo_acc": correct / max(checkable, 1)}, sync_dist=True)
        self.pseudo_sums.zero_()
        super().on_train_epoch_end()
