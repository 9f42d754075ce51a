"""Slurm's requeue signal, handled between two training steps.

Before a job's time limit (or on ``scancel --signal=USR1``) Slurm sends SIGUSR1. Lightning's
own handler saves ``hpc_ckpt_N.ckpt`` inside the signal handler, wherever the step is: the
loaders have served the batch whose optimizer step has not happened yet, so the resumed job
skips one batch (or saves half an optimizer update). Here the handler only takes note; the
checkpoint is written and the job requeued at the end of the current training batch, where
weights, loop counters and the loaders' place in the epoch agree.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

REQUEUE_SIGNAL = signal.SIGUSR1


class RequeueAtBatchEnd(L.Callback):
    """Pair with ``SLURMEnvironment(auto_requeue=False)``, which leaves SIGUSR1 to us."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(REQUEUE_SIGNAL, self._note)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # teardown, not on_fit_end: it also runs when fit stops on an exception
        if self._previous is not None:
            signal.signal(REQUEUE_SIGNAL, self._previous)
            self._previous = None

    def _note(self, signum: int, frame: object) -> None:
        self.requested = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # every rank decides together: a save is collective and signals arrive at different steps
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        self.requested = False
        rank_zero_info(f"Handling requeue signal {REQUEUE_SIGNAL.name} after step "
                       f"{trainer.global_step}")
        trainer.save_checkpoint(next_hpc_path(Path(trainer.default_root_dir)))
        if trainer.is_global_zero:
            requeue(job_id())


def next_hpc_path(folder: Path) -> str:
    """``hpc_ckpt_<N+1>.ckpt``: the names Lightning uses, which a requeued job looks for."""
    numbers = [int(m.group(1)) for p in folder.glob("hpc_ckpt_*.ckpt")
               if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))]
    return str(folder / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt")


def job_id() -> str:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]


def requeue(job: str) -> None:
    """Slurm then stops this attempt with SIGTERM and starts the job again."""
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode == 0:
        rank_zero_info(f"Requeued SLURM job {job}")
    else:
        rank_zero_warn(f"scontrol requeue {job} failed ({result.returncode}): "
                       f"{result.stderr.strip()}")
