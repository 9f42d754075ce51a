"""Everything about dlexp checkpoints: what they carry beside the weights, reading them safely,
checking that one fits a run, rebuilding a trained task from one alone, and writing them.

A checkpoint is Lightning's, plus a plain-data ``dlexp`` section (no pickled objects):
``format``, the ``config`` that built the network (model, data, loss, ...) and the ``data``
description (shapes, classes, normalisation or tokenizer). That section is enough for eval,
predict, export and transfer, with no run directory.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dlexp.builders import build_loss, build_net, multilabel_options
from dlexp.errors import CheckpointError
from dlexp.task import ClassificationTask

log = logging.getLogger(__name__)
FORMAT = 1  # bump when the dlexp section changes in a way older readers cannot follow
SAVED_GROUPS = ("model", "data", "loss", "task_name", "seed")


def extras(cfg: DictConfig, data_info: dict) -> dict:
    """The ``dlexp`` section: plain data that rebuilds the network and its input pipeline."""
    config = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k])
              else cfg[k] for k in SAVED_GROUPS if k in cfg}
    return {"format": FORMAT, "config": config, "data": data_info}


def load(path: str | Path) -> dict:
    """Read a dlexp checkpoint without unpickling arbitrary objects (``weights_only=True``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint, or one "
                              "holding objects that safe (weights_only) loading refuses") from None
    if not isinstance(ckpt, dict) or "dlexp" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a dlexp checkpoint (no 'dlexp' section); "
                              "use a .ckpt written by `python train.py`")
    found = ckpt["dlexp"].get("format") if isinstance(ckpt["dlexp"], dict) else None
    if found != FORMAT:
        raise CheckpointError(f"{path} has dlexp checkpoint format {found!r}; this dlexp reads "
                              f"format {FORMAT}: use the dlexp version that wrote it")
    return ckpt


def model_name(target: str) -> str:
    """``dlexp.models.cnn.CNN`` -> ``CNN``."""
    return target.rsplit(".", 1)[-1]


def option_name(target: str) -> str:
    """``dlexp.models.cnn.CNN`` -> ``cnn``: the model option that builds it."""
    return target.rsplit(".", 2)[-2]


def check_same_model(ckpt: dict, model_target: str, path: str | Path) -> None:
    """Resuming or transferring needs the network class this run builds."""
    saved = ckpt["dlexp"]["config"]["model"]["_target_"]
    if saved != model_target:
        raise CheckpointError(f"{path} holds a {model_name(saved)} but this run builds a "
                              f"{model_name(model_target)}; pick model={option_name(saved)} or "
                              "another checkpoint")


def shapes(ckpt: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}


def check_fits(module: nn.Module, saved: dict[str, tuple[int, ...]], path: str | Path) -> None:
    """Every tensor of ``module`` is in the checkpoint (``saved``: its :func:`shapes`), with
    the same shape."""
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    bad = [k for k, shape in saved.items() if k in own and own[k] != shape]
    missing = [k for k in own if k not in saved]
    if bad or missing:
        what = bad[:3] or missing[:3]
        raise CheckpointError(f"{path} does not fit this model: {len(bad)} shape mismatches, "
                              f"{len(missing)} missing tensors (e.g. {', '.join(what)}); was it "
                              "trained with other model settings?")


@dataclass(frozen=True)
class Resume:
    path: str
    shapes: dict[str, tuple[int, ...]]  # compared with the task once it is built


def for_resume(cfg: DictConfig, requeued: str | None = None) -> Resume | None:
    """The checkpoint this run continues from (a SLURM requeue's own, else ``ckpt_path``),
    read and checked against the configured model before any data is read."""
    if not (requeued or cfg.get("ckpt_path")):
        return None
    path = requeued or str(Path(cfg.ckpt_path).expanduser().resolve())
    ckpt = load(path)
    check_same_model(ckpt, cfg.model._target_, path)
    log.info("resuming from %s (epoch %s, step %s)", path, ckpt.get("epoch"),
             ckpt.get("global_step"))
    return Resume(path, shapes(ckpt))


def rebuild_task(ckpt: dict, path: str | Path, datamodule: Any | None = None
                 ) -> ClassificationTask:
    """The trained network in a :class:`~dlexp.task.ClassificationTask`, in eval mode, from the
    checkpoint alone. With a datamodule, the loss too (class weights need its counts)."""
    extras_ = ckpt["dlexp"]
    if extras_.get("stage") == "language_model":
        raise CheckpointError(f"{path} is a language model (method=language_model): it has no "
                              "trained classifier to evaluate, predict or export; fine-tune one "
                              f"from it with transfer=finetune transfer.source={path}")
    net = build_net(extras_["config"]["model"], extras_["data"], load_pretrained=False)
    labels = multilabel_options(extras_["data"])
    loss = build_loss(extras_["config"]["loss"], datamodule, bool(labels)) \
        if datamodule is not None else None
    task = ClassificationTask(net, optimizer=torch.optim.SGD,
                              num_classes=extras_["data"]["num_classes"], loss=loss,
                              checkpoint_extras=extras_, **labels)
    check_fits(task, shapes(ckpt), path)
    task.load_state_dict(ckpt["state_dict"], strict=False)
    return task.eval()


# ---------------------------------------------------------------------------- writing
_SERIAL = itertools.count()


def _is_local(path: str | Path) -> bool:
    text = str(path)
    return "://" not in text or text.startswith("file://")


class ReentrantCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic and safe to nest.

    Lightning writes each checkpoint inside the file system's fsspec transaction, one object
    shared per file system: a save started while another is being written (a signal handler's,
    a user callback's) closes the shared transaction and the first one fails (``'NoneType'
    object has no attribute '_intrans'``). Local paths here go to a temporary file of their
    own, renamed into place. Other paths (s3://, ...) keep Lightning's way.
    """

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
