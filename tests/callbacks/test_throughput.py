"""TrainThroughput: samples per second of training steps, validation time excluded."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn

from dlexp.callbacks import throughput
from dlexp.callbacks.throughput import TrainThroughput


def test_validation_inside_an_epoch_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # epoch starts at 0 s, validation runs 10-15 s, the epoch ends at 20 s: 15 s of training
    clock = iter([0.0, 10.0, 15.0, 20.0])
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    # during fit's validation Lightning's `trainer.training` is False: the state tells it
    trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING), world_size=1,
                              training=False)
    module = SimpleNamespace(device=torch.device("cpu"))
    cb = TrainThroughput()
    cb.on_train_epoch_start(trainer, module)
    for _ in range(3):
        cb.on_train_batch_end(trainer, module, None, (torch.zeros(10, 2), torch.zeros(10)), 0)
    cb.on_validation_start(trainer, module)
    cb.on_validation_end(trainer, module)
    cb.on_train_epoch_end(trainer, module)
    assert cb.seconds == 15.0 and cb.samples_per_s == pytest.approx(30 / 15)
