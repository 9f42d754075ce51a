"""The steps of a run that do more than ``hydra.utils.instantiate``: the entries of a group that
lists several objects (callbacks, loggers), a network sized by its data, and a task assembled
from the optimizer, scheduler, loss, regularization and method groups."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dlexp.errors import ConfigError
from dlexp.losses import class_weights, positive_weights
from dlexp.models.word_vectors import load_word_vectors
from dlexp.schedulers import Horizon
from dlexp.task import ClassificationTask

log = logging.getLogger(__name__)


def entries(nodes: Any, group: str) -> list[tuple[str, Any]]:
    """(name, node) for every entry of a name -> node mapping (``callbacks``, ``logger``);
    entries removed with ``~callbacks.name`` or set to null are skipped."""
    for name, node in (nodes or {}).items():
        if node is not None and not (isinstance(node, Mapping) and "_target_" in node):
            raise ConfigError(f"{group}.{name} is not a {group} entry (a node with a _target_), "
                              f"got {node!r}")
    return [(name, node) for name, node in (nodes or {}).items() if node is not None]


def instantiate_all(nodes: Any, group: str) -> list:
    """Every entry of a name -> node mapping, built (see :func:`entries`)."""
    return [instantiate(node, _convert_="all") for _, node in entries(nodes, group)]


def build_callbacks(cfg: DictConfig, has_logger: bool, validate: bool) -> list[L.Callback]:
    """``callbacks`` and the method's, minus what cannot work in this run: the LR monitor
    writes to a logger and refuses to run without one; a best checkpoint by a ``val/`` metric
    has nothing to select on without validation (``last.ckpt`` is still written)."""
    callbacks = (instantiate_all(cfg.callbacks, "callbacks")
                 + instantiate_all(cfg.method.callbacks, "method.callbacks"))
    return [c for c in callbacks
            if not (isinstance(c, LearningRateMonitor) and not has_logger)
            and not (isinstance(c, ModelCheckpoint) and not validate
                     and str(c.monitor).startswith("val/"))]


# what a network starts from, when it is not its own initialisation: word vectors (read here)
# and ResNet-18's model.weights (read by the network; ``pretrained`` is its old name)
STARTING_POINTS = {"weights": None, "pretrained": False}


def build_net(model_cfg: DictConfig | dict, data_info: dict, load_pretrained: bool = True
              ) -> nn.Module:
    """The network, told what the data dictates (input shape or vocabulary, classes).
    ``model.vectors`` (a word-vectors file) initialises a text model's embedding and
    ``model.weights`` a ResNet's; a network rebuilt from a checkpoint skips both
    (``load_pretrained=False``): its trained weights are saved."""
    node = OmegaConf.create(model_cfg) if not isinstance(model_cfg, DictConfig) else model_cfg
    vectors = node.get("vectors")
    node = OmegaConf.masked_copy(node, [k for k in node if k != "vectors"])
    skipped = {} if load_pretrained else {k: v for k, v in STARTING_POINTS.items() if k in node}
    net = instantiate(node, _convert_="all", **data_info["net_kwargs"], **skipped)
    if vectors and load_pretrained:
        _load_vectors(net, vectors, data_info)
    return net


def _load_vectors(net: nn.Module, path: str, data_info: dict) -> None:
    if not isinstance(getattr(net, "embedding", None), nn.Embedding) or "tokenizer" not in data_info:
        raise ConfigError("model.vectors needs a text model (an embedding) and text data")
    vocab = json.loads(data_info["tokenizer"])["model"]["vocab"]
    try:
        found = load_word_vectors(net.embedding, path, vocab)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    log.info("word vectors %s: %d of %d vocabulary words found, the rest stay random",
             path, found, len(vocab))
    if found == 0:
        raise ConfigError(f"no vocabulary word found in {path}: is it a GloVe-format text "
                          "file (word v1 v2 ...) for this language?")


def build_loss(loss_cfg: DictConfig | dict, datamodule: Any, multilabel: bool = False
               ) -> nn.Module:
    """The loss; ``class_weights=balanced`` is computed from the training split's counts,
    ``pos_weight=balanced`` (``loss=bce``) from its multi-hot targets. Multi-label data takes
    ``loss=bce`` only, and ``loss=bce`` takes multi-label data only."""
    node = dict(OmegaConf.to_container(loss_cfg, resolve=True)
                if isinstance(loss_cfg, DictConfig) else loss_cfg)
    check_label_kind(multilabel, node)
    if multilabel:
        spec = node.pop("pos_weight", None)
        targets = datamodule.train_targets() if spec == "balanced" else None
        return instantiate(node, pos_weight=positive_weights(spec, targets))
    spec = node.pop("class_weights", None)
    counts = datamodule.class_counts() if spec == "balanced" else None
    return instantiate(node, weight=class_weights(spec, counts))


# what build_task gives every method's task; method.task holds the method's own options
TASK_ARGS = ("net", "optimizer", "num_classes", "loss", "regularization", "scheduler",
             "scheduler_interval", "scheduler_monitor", "checkpoint_extras", "multilabel",
             "threshold")


def build_task(cfg: DictConfig, net: nn.Module, datamodule: Any, checkpoint_extras: dict
               ) -> ClassificationTask:
    """The method's LightningModule (``method.task``) around ``net``, with the optimizer,
    scheduler, loss and regularization groups; a bad lr or momentum fails here, before fit."""
    from dlexp import transfer  # here: transfer -> checkpoint -> builders

    optimizer = transfer.discriminative(instantiate(cfg.optimizer), net,
                                        (cfg.get("transfer") or {}).get("lr_decay"))
    scheduler = instantiate(cfg.scheduler.builder) if cfg.scheduler.get("builder") else None
    _try_optimizer(net, optimizer, scheduler)
    task_cls = instantiate(cfg.method.task, _partial_=True, _convert_="all")
    labels = multilabel_options(checkpoint_extras.get("data") or {})
    check_label_kind(bool(labels), cfg.loss, cfg.method.get("name", "supervised"))
    try:
        return task_cls(
            net=net,
            optimizer=optimizer,
            num_classes=datamodule.num_classes,
            loss=build_loss(cfg.loss, datamodule, bool(labels)),
            regularization=instantiate(cfg.regularization),
            scheduler=scheduler,
            scheduler_interval=cfg.scheduler.interval,
            scheduler_monitor=cfg.scheduler.monitor,
            checkpoint_extras=checkpoint_extras,
            **labels,
        )
    except ValueError as e:  # a method option out of range: the message names it
        raise ConfigError(str(e)) from None


def check_label_kind(multilabel: bool, loss_cfg: Any, method: str = "supervised") -> None:
    """Multi-label data trains with ``loss=bce`` and ``method=supervised`` (pseudo-labels and
    consistency are argmax-based); ``loss=bce`` takes multi-label data only."""
    is_bce = bool(getattr(target_class(loss_cfg, "loss"), "multilabel", False))
    if multilabel != is_bce:
        raise ConfigError("the data is multi-label (data.label_sep, or a list of "
                          "data.label_column): use loss=bce" if multilabel else
                          "loss=bce is for multi-label data (data.label_sep=',' or a list of "
                          "0/1 columns in data.label_column); use loss=cross_entropy")
    if multilabel and method != "supervised":
        raise ConfigError(f"method={method} is single-label; multi-label data trains with "
                          "method=supervised")


def multilabel_options(data_info: dict) -> dict:
    """The task's multi-label arguments from the data's description (``describe()``, which
    the checkpoint keeps, so the training threshold is predict's default); {} when
    single-label."""
    if not data_info.get("multilabel"):
        return {}
    return {"multilabel": True, "threshold": float(data_info.get("threshold", 0.5))}


def _try_optimizer(net: nn.Module, optimizer: Any, scheduler: Any) -> None:
    """Build optimizer and scheduler once on the real parameters: torch accepts some values
    it cannot train with, and others fail only when the first epoch starts."""
    try:
        opt = optimizer([p for p in net.parameters() if p.requires_grad])
        for group in opt.param_groups[:1]:
            if isinstance(group["lr"], int | float) and group["lr"] <= 0:
                raise ValueError(f"optimizer.lr must be > 0, got {group['lr']}")
            if not 0 <= group.get("momentum", 0) < 1:
                raise ValueError(f"optimizer.momentum must be in [0, 1), got {group['momentum']}")
        if scheduler is not None:
            scheduler(opt, Horizon(total_steps=10, max_epochs=1))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optimizer/scheduler: {e}") from None


def target_class(node: DictConfig | dict, key: str) -> type:
    """The class a config node's ``_target_`` names, without building it."""
    try:
        return get_class(node["_target_"])
    except Exception as e:
        raise ConfigError(f"{key}._target_ {node['_target_']!r} cannot be imported: {e}") from None
