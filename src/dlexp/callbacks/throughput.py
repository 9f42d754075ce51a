"""Training throughput that excludes validation: samples per second of training steps only."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn


def _sync(module: L.LightningModule) -> None:
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


def _count(batch: Any) -> int:
    """Samples in a batch: ``(inputs, labels)``, or a dict of such (labeled + unlabeled)."""
    if isinstance(batch, dict):
        return sum(_count(b) for b in batch.values())
    return len(batch[-1])


class TrainThroughput(L.Callback):
    """Times each training epoch and subtracts the validation runs that happen inside it."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._epoch_start = self._val_start = 0.0
        self._val_seconds = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _sync(pl_module)
        self._epoch_start, self._val_seconds = time.perf_counter(), 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += _count(batch) * trainer.world_size

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # (trainer.training is False in here)
            _sync(pl_module)
            self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self._val_seconds += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _sync(pl_module)
        self.seconds += time.perf_counter() - self._epoch_start - self._val_seconds

    @property
    def samples_per_s(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None
