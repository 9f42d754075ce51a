"""Per-step costs that Lightning adds and dlexp takes off (measured with scripts/benchmark.py).

Both are invisible in results and only change what a step costs:

- ``NullProfiler``: with no profiler configured, Lightning still wraps each hook call (~25 per
  training step) in the pass-through profiler's generator-based context manager.
- ``CpuCudaCheck``: importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` so that asking
  whether CUDA exists cannot break a later ``fork``. torch's optimizers ask on every ``step()``
  and, until CUDA is initialised (never, in a CPU run), NVML mode loads ``libnvidia-ml`` afresh
  each time: ~0.15 ms a step on the 2-core CI machine, 2-4% of an MNIST MLP step.
"""

from __future__ import annotations

import contextlib
import os

import lightning as L
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.profilers import PassThroughProfiler

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
_NOTHING = contextlib.nullcontext()


class NullProfiler(PassThroughProfiler):
    """Lightning's default profiler, without building a context manager per hook call."""

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return _NOTHING


class CpuCudaCheck(L.Callback):
    """On a CPU run, asks CUDA's runtime (cheap, answered once) instead of NVML (a library load
    per optimizer step). Set in ``setup``, after Lightning has launched any processes, so fork
    safety is untouched; restored in ``teardown``. GPU runs are left alone: once CUDA is
    initialised torch caches the answer anyway."""

    def __init__(self) -> None:
        self._saved: str | None = None
        self._active = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if isinstance(trainer.accelerator, CPUAccelerator) and not self._active:
            self._saved, self._active = os.environ.get(NVML_CHECK), True
            os.environ[NVML_CHECK] = "0"

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._restore()  # Lightning skips callback teardown when fit raises

    def _restore(self) -> None:
        if not self._active:
            return
        if self._saved is None:
            os.environ.pop(NVML_CHECK, None)
        else:
            os.environ[NVML_CHECK] = self._saved
        self._active = False
