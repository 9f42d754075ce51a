"""Supervised classification: any network, any loss, penalties, optimizer and scheduler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from dlexp.tasks.losses import CrossEntropy
from dlexp.tasks.regularization import WeightPenalty
from dlexp.tasks.schedulers import Horizon

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


class ClassificationTask(L.LightningModule):
    """Trains ``net`` on (inputs, labels) batches; logs ``{train,val,test}/{loss,acc,f1}``."""

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
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.scheduler_monitor = scheduler_interval, scheduler_monitor
        self.criterion = loss if loss is not None else CrossEntropy()
        self.penalty = regularization if regularization is not None and regularization.active \
            else None
        self.num_classes = num_classes
        self.checkpoint_extras = checkpoint_extras or {}
        self.train_metrics = _metrics(num_classes, "train/")
        self.val_metrics = _metrics(num_classes, "val/")
        self.test_metrics = _metrics(num_classes, "test/")
        self.test_confmat = MulticlassConfusionMatrix(num_classes)
        self.misclassified: list[tuple[Any, int, int]] = []

    def forward(self, x: Any) -> torch.Tensor:
        return forward_net(self.net, x)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[-1]
        logits = self(x)
        loss = self.criterion(logits, y)
        if self.penalty is not None:
            penalty = self.penalty(self.net)
            self.log("train/penalty", penalty, on_step=False, on_epoch=True)
            loss = loss + penalty
        self.train_metrics.update(logits.detach(), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute(), sync_dist=True)  # already synced values
        self.train_metrics.reset()

    def _eval_step(self, batch: tuple, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[-1]
        logits = self(x)
        loss = self.criterion(logits, y)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True,
                 batch_size=len(y))
        self.log_dict(metrics, prog_bar=stage == "val")
        return logits

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        logits = self._eval_step(batch, "test")
        y, preds = batch[-1], logits.argmax(-1)
        self.test_confmat.update(preds, y)
        self._keep_misclassified(batch[0], preds, y)

    def _keep_misclassified(self, x: Any, preds: torch.Tensor, y: torch.Tensor) -> None:
        room = MAX_MISCLASSIFIED - len(self.misclassified)
        if room <= 0 or not isinstance(x, torch.Tensor):
            return
        wrong = (preds != y).nonzero().squeeze(1)[:room].tolist()
        self.misclassified += [(x[i].detach().cpu(), int(preds[i]), int(y[i])) for i in wrong]

    def on_test_epoch_start(self) -> None:
        self.test_confmat.reset()
        self.misclassified = []

    def predict_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        """Batches are ``(inputs, labels)`` as in the other stages; labels are ignored."""
        return self(batch[0]).float().softmax(-1)

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
        """Store what eval/predict need to rebuild the network without the run directory."""
        checkpoint["dlexp"] = self.checkpoint_extras
