"""An exponential moving average of the weights for validation, checkpoints and test."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class EMA(WeightAveraging):
    """Lightning's ``WeightAveraging`` with an EMA (FixMatch evaluates one with decay 0.999):
    validation swaps the average in, checkpoints hold it as their ``state_dict``.

    Lightning keeps the average after fit and would swap it into any later ``validate`` run,
    so the re-validation of the best checkpoint would score the last average instead; this
    callback drops it when training ends.
    """

    def __init__(self, decay: float = 0.999) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay))

    def averaged(self) -> nn.Module | None:
        """The averaged copy of the LightningModule during fit (None before and after)."""
        return self._average_model.module if self._average_model is not None else None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._average_model = None
