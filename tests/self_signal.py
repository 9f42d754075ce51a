"""A callback that sends its own training process a signal at a chosen batch: a crash
(SIGKILL: no chance to clean up or save) or a stop request (SIGTERM, SIGINT) at a known point.
Tests add it with ``+callbacks.signal._target_=self_signal.SignalAt``."""

from __future__ import annotations

import os
import signal

import lightning as L


class SignalAt(L.Callback):
    """``save``: first write a checkpoint there, as Slurm's requeue signal does mid-epoch."""

    def __init__(self, epoch: int, batch: int, signal: str = "SIGKILL",
                 save: str | None = None) -> None:
        self.epoch, self.batch, self.signal, self.save = epoch, batch, signal, save

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.current_epoch == self.epoch and args[-1] == self.batch:
            if self.save:
                trainer.save_checkpoint(self.save)
            os.kill(os.getpid(), getattr(signal, self.signal))
