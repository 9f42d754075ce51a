"""Supervised classification: any network, any loss, penalties, optimizer and scheduler.
Single-label (softmax, class indices) or, with ``multilabel=True``, multi-label (a sigmoid per
output, multi-hot float targets, F1 at ``threshold`` and mean average precision)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MultilabelAveragePrecision,
    MultilabelConfusionMatrix,
    MultilabelExactMatch,
    MultilabelF1Score,
)

from dlexp import rng
from dlexp.errors import CheckpointError, Diverged
from dlexp.losses import BinaryCrossEntropy, CrossEntropy
from dlexp.regularization import WeightPenalty
from dlexp.schedulers import Horizon

RNG_KEY = "dlexp_rng"
DIVERGED = 1e3  # a training loss this many times its first value has diverged
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, Horizon], Any]
MAX_MISCLASSIFIED = 64  # examples kept for the TensorBoard grid


def forward_net(net: nn.Module, x: Any) -> torch.Tensor:
    """Images arrive as one tensor, token batches as a tuple (ids, lengths)."""
    return net(*x) if isinstance(x, tuple | list) else net(x)


def _metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection({
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
    }, prefix=prefix)


def _multilabel_metrics(num_labels: int, threshold: float, prefix: str) -> MetricCollection:
    """``acc`` is the exact-match (subset) accuracy: every label of a sample right. (Hamming
    accuracy, the share of right labels, is near 1 for sparse labels whatever the model
    does, which would leave early stopping and ``val/acc`` records nothing to see.)"""
    return MetricCollection({
        "acc": MultilabelExactMatch(num_labels, threshold=threshold),
        "f1": MultilabelF1Score(num_labels, threshold=threshold, average="macro"),
        "map": MultilabelAveragePrecision(num_labels, average="macro"),
    }, prefix=prefix)


class TrainStats(Metric):
    """Epoch sums behind ``train/{loss_epoch,acc,f1,penalty}``: one bincount per step instead of
    two torchmetrics classifiers and a per-step ``self.log`` (the MLP's steps are ~1 ms, so
    that bookkeeping showed in the benchmark). Summed across ranks on compute."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros(num_classes**2, dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("sums", torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor,
               penalty: torch.Tensor | None = None) -> None:
        # in place and without temporaries: ~10 us a step instead of ~20 us (every state
        # assignment also goes through Metric/Module.__setattr__)
        k, n = self.num_classes, len(target)
        self.confusion.add_(torch.bincount(target * k + logits.argmax(-1), minlength=k * k))
        self.sums[0].add_(loss.detach(), alpha=n)  # accumulated in float64
        if penalty is not None:
            self.sums[1].add_(penalty.detach(), alpha=n)

    def compute(self) -> dict[str, torch.Tensor]:
        k = self.num_classes
        m = self.confusion.view(k, k).double()  # rows: true class, columns: predicted
        n, tp, seen = m.sum().clamp(min=1), m.diag(), m.sum(0) + m.sum(1)
        f1 = (2 * tp / seen.clamp(min=1))[seen > 0]  # as torchmetrics: absent classes drop out
        return {"train/loss_epoch": self.sums[0] / n, "train/acc": tp.sum() / n,
                "train/f1": f1.mean() if len(f1) else m.new_zeros(()),
                "train/penalty": self.sums[1] / n}


class MultilabelTrainStats(Metric):
    """:class:`TrainStats` for multi-label batches: per label true/false positives and false
    negatives at ``threshold`` (``train/f1``: their macro F1, as torchmetrics computes it) and
    exact matches (``train/acc``)."""

    full_state_update = False

    def __init__(self, num_labels: int, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold
        self.add_state("counts", torch.zeros(3, num_labels, dtype=torch.long),
                       dist_reduce_fx="sum")  # tp, fp, fn
        self.add_state("sums", torch.zeros(4, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor,
               penalty: torch.Tensor | None = None) -> None:
        pred, truth = logits.float().sigmoid() > self.threshold, target > 0.5
        self.counts[0].add_((pred & truth).sum(0))
        self.counts[1].add_((pred & ~truth).sum(0))
        self.counts[2].add_((~pred & truth).sum(0))
        n = len(target)
        self.sums[0].add_(loss.detach(), alpha=n)
        if penalty is not None:
            self.sums[1].add_(penalty.detach(), alpha=n)
        self.sums[2].add_((pred == truth).all(-1).sum())
        self.sums[3].add_(n)

    def compute(self) -> dict[str, torch.Tensor]:
        tp, fp, fn = self.counts.double()
        n = self.sums[3].clamp(min=1)
        f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1)  # a label never seen nor predicted: 0
        return {"train/loss_epoch": self.sums[0] / n, "train/acc": self.sums[2] / n,
                "train/f1": f1.mean(), "train/penalty": self.sums[1] / n}


class ClassificationTask(L.LightningModule):
    """Trains ``net`` on (inputs, labels) batches; logs ``{train,val,test}/{loss,acc,f1}``.
    Multi-label (``multilabel=True``): targets are multi-hot floats (N, C), the default loss
    is :class:`~dlexp.losses.BinaryCrossEntropy`, ``acc`` is the exact-match accuracy, ``f1``
    the macro F1 over labels at ``threshold``, and ``{val,test}/map`` the macro mean average
    precision."""

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Raise ValueError, naming the key, for a ``method.task`` value that is wrong whatever
        the data. The config check calls it with every option (defaults filled in) before any
        data is read; a method's ``__init__`` calls it too, for tasks built in Python."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        loss: nn.Module | None = None,
        regularization: WeightPenalty | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/loss",
        checkpoint_extras: dict | None = None,
        multilabel: bool = False,
        threshold: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0 < threshold < 1:
            raise ValueError(f"data.threshold must be in (0, 1), got {threshold}")
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.scheduler_monitor = scheduler_interval, scheduler_monitor
        self.multilabel, self.threshold = multilabel, threshold
        self.criterion = loss if loss is not None else \
            BinaryCrossEntropy() if multilabel else CrossEntropy()
        self.penalty = regularization if regularization is not None and regularization.active \
            else None
        self.num_classes = num_classes
        self.checkpoint_extras = checkpoint_extras or {}
        if multilabel:
            self.train_stats: Metric = MultilabelTrainStats(num_classes, threshold)
            self.val_metrics = _multilabel_metrics(num_classes, threshold, "val/")
            self.test_metrics = _multilabel_metrics(num_classes, threshold, "test/")
            self.test_confmat: Metric = MultilabelConfusionMatrix(num_classes, threshold)
        else:
            self.train_stats = TrainStats(num_classes)
            self.val_metrics = _metrics(num_classes, "val/")
            self.test_metrics = _metrics(num_classes, "test/")
            self.test_confmat = MulticlassConfusionMatrix(num_classes)
        self.misclassified: list[tuple[Any, int, int]] = []
        self._first_loss: float | None = None
        self._rng_to_restore: dict | None = None

    def forward(self, x: Any) -> torch.Tensor:
        return forward_net(self.net, x)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[-1]
        logits = self(x)
        loss = self.criterion(logits, y)
        penalty = None
        if self.penalty is not None:
            penalty = self.penalty(self.net)
            loss = loss + penalty
        self.train_stats.update(logits.detach(), y, loss, penalty)
        self.log_step(loss)
        return loss

    def log_step(self, loss: torch.Tensor, **more: torch.Tensor) -> None:
        """Log the step's loss (and ``more``) on the steps Lightning writes, every
        ``log_every_n_steps`` (``self.log`` costs more than a small step's maths), and check
        there, and on the first step, that training has not diverged."""
        first = self._trainer is not None and self.trainer.global_step == 0
        if not (first or self._writes_step_logs()):
            return
        self.check_divergence(float(loss.detach()), "step")
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        if more:
            self.log_dict(more, on_step=True, on_epoch=False)

    def _writes_step_logs(self) -> bool:
        if self._trainer is None:
            return True
        every = max(int(self.trainer.log_every_n_steps), 1)
        return (self.trainer.global_step + 1) % every == 0 or bool(self.trainer.fast_dev_run)

    def check_divergence(self, loss: float, where: str) -> None:
        """A NaN or infinite loss, or one ``DIVERGED`` times above the first step's, ends the
        run as ``diverged`` with what to change, instead of training on garbage."""
        if self._first_loss is None and math.isfinite(loss):
            self._first_loss = loss
        start = self._first_loss if self._first_loss is not None else math.nan
        if math.isfinite(loss) and not loss > DIVERGED * max(start, 1e-3):
            return
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self._trainer else math.nan
        raise Diverged(f"training diverged at epoch {self.current_epoch}, step "
                       f"{self.global_step}: the {where} loss is {loss:.3g} (it started at "
                       f"{start:.3g}); lower optimizer.lr (now {lr:.3g}) or set "
                       f"trainer.gradient_clip_val=1.0")

    def on_train_epoch_end(self) -> None:
        stats = self.train_stats.compute()
        self.check_divergence(float(stats["train/loss_epoch"]), "epoch's mean")
        if self.penalty is None:
            stats.pop("train/penalty")
        self.log_dict({k: v.float() for k, v in stats.items()}, sync_dist=True)
        self.train_stats.reset()

    def _eval_step(self, batch: tuple, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[-1]
        logits = self(x)
        loss = self.criterion(logits, y)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        if self.multilabel:  # probabilities: torchmetrics guesses logits per batch otherwise
            metrics.update(logits.float().sigmoid(), y.long())
        else:
            metrics.update(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True,
                 batch_size=len(y))
        self.log_dict(metrics, prog_bar=stage == "val")
        return logits

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        logits = self._eval_step(batch, "test")
        if self.multilabel:  # per-label confusion; no "misclassified" grid for label sets
            self.test_confmat.update(logits.float().sigmoid(), batch[-1].long())
            return
        y, preds = batch[-1], logits.argmax(-1)
        self.test_confmat.update(preds, y)
        self._keep_misclassified(batch[0], preds, y)

    def _keep_misclassified(self, x: Any, preds: torch.Tensor, y: torch.Tensor) -> None:
        """Keep the first wrong examples: images as they are, token batches ``(ids, lengths)``
        as each review's real tokens."""
        room = MAX_MISCLASSIFIED - len(self.misclassified)
        if room <= 0:
            return
        wrong = (preds != y).nonzero().squeeze(1)[:room].tolist()
        if isinstance(x, tuple | list):
            ids, lengths = x
            examples = [ids[i, : int(lengths[i])] for i in wrong]
        else:
            examples = [x[i] for i in wrong]
        self.misclassified += [(e.detach().cpu(), int(preds[i]), int(y[i]))
                               for e, i in zip(examples, wrong, strict=True)]

    def on_test_epoch_start(self) -> None:
        self.test_confmat.reset()
        self.misclassified = []

    def predict_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        """Batches are ``(inputs, labels)`` as in the other stages; labels are ignored.
        Class probabilities (a sigmoid per label for multi-label tasks)."""
        logits = self(batch[0]).float()
        return logits.sigmoid() if self.multilabel else logits.softmax(-1)

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        horizon = Horizon(int(self.trainer.estimated_stepping_batches),
                          int(self.trainer.max_epochs or 1))
        scheduler = self.scheduler_factory(optimizer, horizon)
        return {"optimizer": optimizer, "lr_scheduler": {
            "scheduler": scheduler, "interval": self.scheduler_interval,
            "monitor": self.scheduler_monitor}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store what eval/predict need to rebuild the network without the run directory, and
        every rank's random-number states for an exact resume."""
        checkpoint["dlexp"] = self.checkpoint_extras
        checkpoint[RNG_KEY] = rng.capture_all_ranks()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get(RNG_KEY, [])
        rank = self.trainer.global_rank if self._trainer is not None else 0
        self._rng_to_restore = states[rank] if rank < len(states) else None

    def on_train_start(self) -> None:
        """A resumed run takes up the random-number states where the checkpoint left them:
        here, after restoring and sanity checks, before the next batch draws any (an epoch
        restarted in its middle gets no ``on_train_epoch_start``)."""
        if self._rng_to_restore is not None:
            rng.restore(self._rng_to_restore)
            self._rng_to_restore = None

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's loader cannot rebuild this task: its network and optimizer are objects,
        not saved hyperparameters. The checkpoint's ``dlexp`` section rebuilds them instead."""
        raise CheckpointError(f"ClassificationTask.load_from_checkpoint cannot rebuild a dlexp "
                              f"model; use `model = dlexp.load({str(checkpoint_path)!r})` "
                              "(model.task, model.net, model.predict_images/predict_texts)")
