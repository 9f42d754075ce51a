"""Slurm's requeue signal is handled at the end of the training batch it lands in."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from dlexp import requeue
from dlexp.data.tensor_loader import TensorBatchLoader

STEPS_PER_EPOCH = 8


class Linear(L.LightningModule):
    """Sends itself SIGUSR1 in the middle of step 5, before its optimizer step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        if self.trainer.current_epoch == 1 and batch_idx == 5:
            os.kill(os.getpid(), signal.SIGUSR1)
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_checkpoint_is_saved_after_the_step_the_signal_landed_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requeued = []
    monkeypatch.setattr(requeue, "requeue", requeued.append)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    loader = TensorBatchLoader((torch.randn(4 * STEPS_PER_EPOCH, 2),), batch_size=4, shuffle=True)
    callback = requeue.RequeueAtBatchEnd()
    trainer = L.Trainer(max_epochs=2, default_root_dir=tmp_path, callbacks=[callback],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    before = signal.getsignal(signal.SIGUSR1)
    trainer.fit(Linear(), loader)
    assert signal.getsignal(signal.SIGUSR1) == before  # the handler is the caller's again
    assert requeued == ["42"]
    saved = torch.load(tmp_path / "hpc_ckpt_1.ckpt", weights_only=True)
    assert saved["global_step"] == STEPS_PER_EPOCH + 6  # step 5 of epoch 1 done, none after
    (state,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert state == {"epoch": 1, "served": 6}  # the loader's place agrees with the steps


def test_hpc_checkpoints_are_numbered_after_the_existing_ones(tmp_path: Path) -> None:
    assert requeue.next_hpc_path(tmp_path) == str(tmp_path / "hpc_ckpt_1.ckpt")
    for name in ("hpc_ckpt_1.ckpt", "hpc_ckpt_3.ckpt", "hpc_ckpt_x.ckpt"):
        (tmp_path / name).touch()
    assert requeue.next_hpc_path(tmp_path) == str(tmp_path / "hpc_ckpt_4.ckpt")


def test_an_array_task_is_requeued_by_its_array_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "107")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "100")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert requeue.job_id() == "100_7"
