"""Transfer learning from a dlexp checkpoint: the course's two uses of a trained network (fixed
feature extractor, initialisation) plus gradual unfreezing.

Convention: ``net.head`` is the head (the last linear layer, sized by the task's classes);
every other child module of the network is the backbone (CNN: ``features`` and ``classifier``;
MLP: ``features``; ResNet18: ``features``). The head is always trained; the source's head is
only kept on request, as a new task's classes mean something else. The text classifier
(``models/rnn.py``) follows it too: embedding and recurrent layers are the backbone, and a
``method=language_model`` checkpoint is a source like any other (its next-token head is no part
of the network), whose tokenizer encodes the fine-tune's data (:func:`use_source_tokenizer`).
``lr_decay`` gives each lower layer group a smaller learning rate (ULMFiT's discriminative
fine-tuning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BackboneFinetuning
from torch import nn

from dlexp import checkpoint
from dlexp.data.tokenizer import from_json
from dlexp.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)
MODES = ("none", "finetune", "feature_extractor", "gradual")


def split(net: nn.Module, train_also: list[str] | tuple[str, ...] = ()
          ) -> tuple[nn.Module, list[nn.Module]]:
    """(head, backbone modules) by the ``net.head`` convention; the child modules named in
    ``train_also`` (e.g. the CNN's dense ``classifier``) train with the head, so the features
    are the output of the layers before them, as the course picks "some layer's output"."""
    head = getattr(net, "head", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(f"transfer needs a network with a `head` module; "
                          f"{type(net).__name__} has none")
    children = [name for name, _ in net.named_children() if name != "head"]
    unknown = sorted(set(train_also) - set(children))
    if unknown:
        raise ConfigError(f"transfer.train_also: {type(net).__name__} has no {unknown}; its "
                          f"parts before the head are {', '.join(children)}")
    return head, [m for name, m in net.named_children()
                  if name != "head" and name not in train_also]


def read_source(options: dict, model_target: str) -> tuple[str, dict] | None:
    """``transfer.source`` read and checked against this run's network class, before any data
    is read: (path, checkpoint), or None without a source."""
    mode = options.get("mode", "none")
    if mode not in MODES:
        raise ConfigError(f"transfer.mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none" or options.get("source") is None:
        return None
    path = str(Path(options["source"]).expanduser().resolve())
    ckpt = checkpoint.load(path)
    saved = ckpt["dlexp"]["config"]["model"]["_target_"]
    if saved != model_target:
        raise CheckpointError(f"transfer.source {path} holds a {_name(saved)} but this run builds "
                              f"a {_name(model_target)}; transfer needs the same architecture")
    return path, ckpt


def use_source_tokenizer(datamodule: Any, source: tuple[str, dict] | None) -> None:
    """A text source's tokenizer for this run's data: token ids mean words only under their
    tokenizer, and the source's embedding rows are its words, so the data encodes with it
    (through ``use_pipeline``, as ``dlexp-eval`` gives a checkpoint's) instead of fitting one;
    ``max_len`` and ``truncate`` stay this run's. Tokenizer settings that differ from the
    source run's are not used: one warning names them. Data that cannot take a tokenizer is
    left as it is (:func:`load_source` refuses it if its own differs)."""
    info = source[1]["dlexp"].get("data", {}) if source else {}
    use = getattr(datamodule, "use_pipeline", None)
    if not info.get("tokenizer") or use is None or not hasattr(datamodule, "tokenizer"):
        return
    use(info, truncation=False)
    saved = (source[1]["dlexp"]["config"].get("data") or {}).get("tokenizer") or {}
    differ = [f"{k}={v} (the source's: {saved[k]})" for k, v in datamodule.tokenizer.items()
              if k in saved and saved[k] != v]
    words = from_json(info["tokenizer"]).get_vocab_size()
    if differ:
        log.warning("transfer.source %s: encoding with its tokenizer (%d words), so the "
                    "embedding rows mean the words they were trained as; data.tokenizer %s "
                    "not used", source[0], words, ", ".join(differ))
    else:
        log.info("transfer.source %s: encoding with its tokenizer (%d words)", source[0], words)


def load_source(net: nn.Module, ckpt: dict, path: str, keep_head: bool = False,
                data_info: dict | None = None) -> dict[str, list[str]]:
    """Copy the source network's backbone (and with ``keep_head`` its head, when the sizes
    match) into ``net``. Returns and logs what was loaded, skipped and reinitialised."""
    saved = ckpt["dlexp"]["config"]["model"]["_target_"]
    _check_inputs(ckpt["dlexp"].get("data", {}), data_info or {}, path)
    source = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    own = net.state_dict()
    bad = [f"{k} {tuple(source[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
           if not _is_head(k) and k in source and source[k].shape != v.shape]
    missing = [k for k in own if not _is_head(k) and k not in source]
    if bad or missing:
        raise CheckpointError(f"transfer.source {path} has another {_name(saved)} architecture: "
                              f"{len(bad)} backbone shape mismatches, {len(missing)} missing "
                              f"tensors (e.g. {', '.join((bad or missing)[:2])}); pretrain with "
                              "the same model settings")
    report: dict[str, list[str]] = {"loaded": [], "skipped": [], "reinitialised": []}
    for k in own:
        if not _is_head(k) or (keep_head and k in source and source[k].shape == own[k].shape):
            report["loaded"].append(k)
        else:
            report["reinitialised"].append(k)
            if k in source:
                why = "kept off" if source[k].shape == own[k].shape else \
                    f"{tuple(source[k].shape)} vs {tuple(own[k].shape)}"
                report["skipped"].append(f"{k} ({why})")
    report["skipped"] += [f"{k} (not in this network)" for k in source if k not in own]
    net.load_state_dict({k: source[k] for k in report["loaded"]}, strict=False)
    log.info("transfer from %s: loaded %d tensors (%s), skipped %s, reinitialised %s", path,
             len(report["loaded"]), _summary(report["loaded"]), report["skipped"] or "nothing",
             report["reinitialised"] or "nothing")
    return report


def _check_inputs(source: dict, target: dict, path: str) -> None:
    """Features learned on one input scaling mean little on another (raw 0-255 vs standardised
    pixels differ ~800x): the data's normalisation must match."""
    scale = [(d.get("mean"), d.get("std")) for d in (source, target)]
    if None not in scale[0] and None not in scale[1] and scale[0] != scale[1]:
        raise CheckpointError(f"transfer.source {path} was trained on inputs normalised with "
                              f"mean/std {scale[0]}, this run uses {scale[1]}: set the same "
                              f"data.normalize as the source run")
    # token ids mean words only under their tokenizer: an embedding row is a word's vector
    tokenizers = [d.get("tokenizer") for d in (source, target)]
    if None not in tokenizers and tokenizers[0] != tokenizers[1]:
        raise CheckpointError(f"transfer.source {path} was trained with another tokenizer than "
                              "this run's, and this data module cannot take the source's "
                              "(it has no use_pipeline): use the source run's data.tokenizer "
                              "settings, data.seed and data.val_size, so both fit the same "
                              "vocabulary")


def _is_head(key: str) -> bool:
    return key.startswith("head.")


def _name(target: str) -> str:
    return target.rsplit(".", 1)[-1]


def _summary(keys: list[str]) -> str:
    tops = sorted({k.split(".", 1)[0] for k in keys})
    return "+".join(tops) if tops else "none"


def layer_groups(net: nn.Module) -> list[list[nn.Parameter]]:
    """The network's parameters by layer, input first, head last: each child module is a group
    (the items of a ``ModuleList`` each their own: the RNN's layers), those without parameters
    left out."""
    modules: list[nn.Module] = []
    for name, child in net.named_children():
        if name != "head":
            modules += list(child) if isinstance(child, nn.ModuleList) else [child]
    if isinstance(getattr(net, "head", None), nn.Module):
        modules.append(net.head)
    return [ps for ps in (list(m.parameters()) for m in modules) if ps]


def discriminative(optimizer: Callable[..., torch.optim.Optimizer], net: nn.Module,
                   decay: float | None) -> Callable[..., torch.optim.Optimizer]:
    """The optimizer factory with one parameter group per layer group of ``net``: the head at
    ``optimizer.lr``, each group below it at the one above's lr divided by ``decay`` (ULMFiT:
    2.6). ``decay`` None: the factory as it is."""
    if decay is None:
        return optimizer
    if not isinstance(decay, int | float) or decay < 1:
        raise ConfigError(f"transfer.lr_decay must be a number >= 1 (or null), got {decay!r}")
    base = getattr(optimizer, "keywords", {}).get("lr")
    if not isinstance(base, int | float):
        raise ConfigError("transfer.lr_decay needs an optimizer with an lr setting")
    groups = layer_groups(net)

    def build(params: list[nn.Parameter], **kwargs: object) -> torch.optim.Optimizer:
        wanted = {id(p) for p in params}
        grouped = [{"params": [p for p in group if id(p) in wanted], "lr": base / decay**depth}
                   for depth, group in enumerate(reversed(groups))]
        placed = {id(p) for group in groups for p in group}
        grouped.append({"params": [p for p in params if id(p) not in placed], "lr": base})
        return optimizer([g for g in grouped if g["params"]], **kwargs)

    return build


def freeze(modules: list[nn.Module]) -> None:
    """No gradients, and eval mode: BatchNorm keeps its running statistics, dropout is off."""
    for m in modules:
        m.requires_grad_(False)
        m.eval()


class FrozenBackbone(L.Callback):
    """Keeps frozen modules in eval mode through fit (Lightning restores per-module modes after
    validation, but a mode set before fit is not guaranteed to survive every path)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for m in self.modules:
            m.eval()


class GradualUnfreeze(BackboneFinetuning):
    """Lightning's ``BackboneFinetuning`` on the ``net.head`` convention: the backbone is frozen
    (eval mode) until ``unfreeze_at_epoch``, then trains at ``backbone_lr_ratio`` x the head's
    learning rate, growing by ``lr_growth`` per epoch up to the head's rate."""

    def __init__(self, backbone: list[nn.Module], unfreeze_at_epoch: int = 3,
                 backbone_lr_ratio: float = 0.1, lr_growth: float = 1.5) -> None:
        super().__init__(unfreeze_backbone_at_epoch=unfreeze_at_epoch,
                         lambda_func=_constant(lr_growth),
                         backbone_initial_ratio_lr=backbone_lr_ratio, should_align=True,
                         train_bn=True, verbose=False)
        self.backbone = nn.ModuleList(backbone)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # skip BackboneFinetuning's check for a `pl_module.backbone` attribute
        super(BackboneFinetuning, self).on_fit_start(trainer, pl_module)

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        freeze(list(self.backbone))

    def finetune_function(self, pl_module: L.LightningModule, epoch: int,
                          optimizer: torch.optim.Optimizer) -> None:
        super().finetune_function(self, epoch, optimizer)  # reads only `.backbone`
        if epoch < self.unfreeze_backbone_at_epoch:
            self.backbone.eval()
        elif epoch == self.unfreeze_backbone_at_epoch:
            self.backbone.train()
            log.info("gradual transfer: backbone unfrozen at epoch %d, lr %.3g", epoch,
                     self.previous_backbone_lr)


def _constant(factor: float) -> Callable[[int], float]:
    return lambda epoch: factor


def apply(net: nn.Module, options: dict, source: tuple[str, dict] | None,
          data_info: dict | None = None) -> list[L.Callback]:
    """Load ``source`` (from :func:`read_source`) into ``net`` and freeze as ``options["mode"]``
    says; returns the callbacks the mode needs during fit. ``options`` is the transfer group:
    ``keep_head``, ``train_also`` and :class:`GradualUnfreeze`'s options."""
    options = dict(options)
    mode = options.pop("mode", "none")
    if mode == "none":
        return []
    options.pop("source", None)
    options.pop("lr_decay", None)  # read by the optimizer's building (builders.build_task)
    keep_head = options.pop("keep_head", False)
    head, backbone = split(net, options.pop("train_also", None) or ())
    if source is not None:
        load_source(net, source[1], source[0], keep_head, data_info)
    elif not getattr(net, "pretrained", False):
        raise ConfigError(f"transfer={mode} needs transfer.source=<a .ckpt from python train.py> "
                          "(or model=resnet18 with model.weights=imagenet or a .pth file)")
    if mode == "feature_extractor":
        freeze(backbone)
        return [FrozenBackbone(backbone)]
    if mode == "gradual":
        return [GradualUnfreeze(backbone, **options)]
    return []
