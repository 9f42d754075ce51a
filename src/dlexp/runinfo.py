"""The run's record: ``metrics.json`` and the flattened hyperparameters for TensorBoard."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

HPARAM_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "regularization")


def is_rank_zero() -> bool:
    """True in the main process, before and after Lightning sets up DDP."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", int(os.environ.get("LOCAL_RANK", 0))) == 0


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Atomic write, so a sweep report never reads half a file. NaN becomes null (valid JSON)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in metrics.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def flat_hparams(cfg: DictConfig, choices: dict[str, str] | None = None) -> dict[str, Any]:
    """Scalars of the swept groups as ``group/key`` for the TensorBoard hparams tab."""
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


def quiet_lightning_notices() -> None:
    """Drop two lines Lightning 2.6 prints on every run that tell our users nothing: the
    litlogger advertisement and a deprecation inside its own pytree helper."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡 Tip:"))
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
