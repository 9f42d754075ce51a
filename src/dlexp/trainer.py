"""``conf/trainer``: Lightning's Trainer as configured, with dlexp's checkpoint writer and the
settings a run without validation or without checkpoint callbacks needs."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig

from dlexp import hardware
from dlexp.checkpoint import ReentrantCheckpointIO
from dlexp.errors import ConfigError
from dlexp.requeue import RequeueAtBatchEnd

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
log = logging.getLogger("dlexp.trainer")


def resolve_precision(trainer_cfg: DictConfig) -> str | None:
    """``precision: auto`` becomes the precision native on this device, in the config itself,
    so the trainer, the hparams and metrics.json all see what ran. Returns why, or None when
    the precision was given."""
    if str(trainer_cfg.get("precision")) != hardware.AUTO:
        return None
    precision, why = hardware.resolve_precision(str(trainer_cfg.get("accelerator", "auto")))
    trainer_cfg.precision = precision
    return why


def build_trainer(trainer_cfg: DictConfig, callbacks: list[L.Callback], loggers: list,
                  validate: bool = True, **kwargs: Any) -> L.Trainer:
    """The Trainer; ``validate=False`` (``data.val_size=0``) runs no validation loop."""
    use_runtime_cuda_check()
    resolve_precision(trainer_cfg)
    if not validate:
        kwargs.update(limit_val_batches=0, num_sanity_val_steps=0)
    if "plugins" not in trainer_cfg and "plugins" not in kwargs:
        kwargs["plugins"] = [ReentrantCheckpointIO()]
        if SLURMEnvironment.detect():  # the requeue checkpoint between steps, not mid-step
            kwargs["plugins"].append(SLURMEnvironment(auto_requeue=False))
            callbacks = [*callbacks, RequeueAtBatchEnd()]
    if "enable_checkpointing" not in trainer_cfg and "enable_checkpointing" not in kwargs:
        # callbacks=none means no checkpoints, not Lightning's default one in another folder
        kwargs["enable_checkpointing"] = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    try:
        return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False,
                           _convert_="all", **kwargs)
    except InstantiationException as e:
        if "No supported gpu backend found" in str(e.__cause__):
            raise ConfigError("no GPU found on this machine: use trainer=cpu (or "
                              "trainer=default, which picks what is there)") from None
        raise


@functools.cache
def nvidia_driver_loadable() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def use_runtime_cuda_check() -> None:
    """Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1``, and torch's optimizers
    then ask NVML whether CUDA exists on every ``step()``: with no NVIDIA driver that is a
    failed library load per step. Where no driver can be loaded there is no CUDA to initialise
    and no fork to poison, so the runtime check gives the same answer: use it there."""
    if not nvidia_driver_loadable():
        os.environ[NVML_CHECK] = "0"
