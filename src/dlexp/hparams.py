"""The run's settings and final metrics in TensorBoard's HParams tab (and any other logger)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams

HPARAM_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "regularization")


def flat_hparams(cfg: DictConfig, choices: dict[str, str] | None = None) -> dict[str, Any]:
    """Scalars of the swept groups as ``group/key``, and the chosen option of every group."""
    out: dict[str, Any] = {f"choice/{k}": v for k, v in (choices or {}).items()
                           if v is not None and not k.startswith("hydra")}
    for group in HPARAM_GROUPS:
        if group in cfg and cfg[group] is not None:
            _flatten(OmegaConf.to_container(cfg[group], resolve=True), group, out)
    out["seed"] = cfg.get("seed")
    out["trainer/max_epochs"] = cfg.trainer.get("max_epochs")
    out["trainer/precision"] = str(cfg.trainer.get("precision"))
    return out


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in ("_partial_", "_convert_"):
                _flatten(v, f"{prefix}/{k.lstrip('_')}", out)
    elif isinstance(node, list):
        out[prefix] = str(node)
    elif node is None or isinstance(node, bool | int | float | str):
        out[prefix] = "null" if node is None else node


def log_hparams(trainer: L.Trainer, params: dict[str, Any], results: dict[str, Any]) -> None:
    """Pair the settings with the run's final metrics (``hp/test_acc``, ...)."""
    finals = {f"hp/{k.replace('/', '_')}": v for k, v in results.items()
              if isinstance(v, float) and math.isfinite(v) and "/" in k}
    for logger in trainer.loggers:
        logger.log_hyperparams(params)  # TensorBoard: hparams.yaml only, without metrics
        logger.log_metrics(finals, step=trainer.global_step)
        if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
            write_session(logger, params, finals, trainer.global_step)


def write_session(logger: TensorBoardLogger, params: dict[str, Any], finals: dict[str, Any],
                  step: int) -> None:
    """The run's entry in TensorBoard's HParams tab: its settings and end, but not the
    experiment summary that torch's ``hparams()`` (and Lightning) also write. Given one,
    TensorBoard sorts the settings by name and shows the first five (choice/callbacks ...
    choice/method, the same in most runs) and five of its metrics; without, it shows first
    the settings that differ between the runs, and every scalar as a metric."""
    _, start, end = hparams(params, finals)
    writer = logger.experiment._get_file_writer()  # as Lightning's log_hyperparams does
    writer.add_summary(start, step)
    writer.add_summary(end, step)
