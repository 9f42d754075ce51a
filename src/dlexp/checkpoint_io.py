"""Checkpoint writes that survive a Slurm requeue signal arriving in the middle of one.

Lightning writes each checkpoint inside the file system's fsspec transaction, one object shared
per file system. On SIGUSR1 (Slurm's warning before the time limit) Lightning saves its requeue
checkpoint from the signal handler; if the signal lands while ``last.ckpt`` is being written,
the nested save closes the shared transaction and the interrupted one then fails
(``'NoneType' object has no attribute '_intrans'``): the job dies instead of requeueing. Local
paths here are written to a temporary file of their own and renamed into place, which is just
as atomic and safe to nest; other paths (s3://, ...) keep Lightning's way.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

_SERIAL = itertools.count()


def _is_local(path: str | Path) -> bool:
    text = str(path)
    return "://" not in text or text.startswith("file://")


class ReentrantCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes can be interrupted by another write."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{next(_SERIAL)}.part")
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, target)  # readers see the old file or the new one, never half
        finally:
            tmp.unlink(missing_ok=True)
