"""Turn a composed Hydra config into Lightning objects. Used only by the entry points."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dlexp.checkpoint_io import ReentrantCheckpointIO
from dlexp.errors import CheckpointError, ConfigError
from dlexp.overhead import CpuCudaCheck, NullProfiler
from dlexp.tasks.classification import ClassificationTask
from dlexp.tasks.losses import class_weights
from dlexp.tasks.schedulers import Horizon

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


def build_node(node: DictConfig, **kwargs: Any) -> Any:
    """Instantiate one config node into plain Python containers (lists, not ListConfigs)."""
    return instantiate(node, _convert_="all", **kwargs)


def build_trainer(trainer_cfg: DictConfig, callbacks: list[L.Callback] | None = None,
                  **kwargs: Any) -> L.Trainer:
    """The configured Trainer, minus Lightning's avoidable per-step costs (``dlexp.overhead``):
    no per-hook profiler context unless a profiler is configured, no NVML load per CPU step."""
    if not trainer_cfg.get("profiler"):
        kwargs["profiler"] = NullProfiler()
    callbacks = [*(callbacks or []), CpuCudaCheck()]
    if "plugins" not in trainer_cfg and "plugins" not in kwargs:
        kwargs["plugins"] = [ReentrantCheckpointIO()]  # a requeue signal may land mid-save
    if "enable_checkpointing" not in trainer_cfg and "enable_checkpointing" not in kwargs:
        # callbacks=none means no checkpoints, not Lightning's default one in another folder
        kwargs["enable_checkpointing"] = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    try:
        return build_node(trainer_cfg, callbacks=callbacks, **kwargs)
    except InstantiationException as e:
        if "No supported gpu backend found" in str(e.__cause__):
            raise ConfigError("no GPU found on this machine: use trainer=cpu (or "
                              "trainer=default, which picks what is there)") from None
        raise


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    return build_node(cfg.data)


def model_name(cfg: DictConfig | dict) -> str:
    return str(cfg["model"]["_target_"]).rsplit(".", 1)[-1]


def build_net(model_cfg: DictConfig | dict, data_info: dict, load_vectors: bool = True
              ) -> nn.Module:
    """Instantiate the network with what the data dictates (shapes, classes, vocabulary).
    ``model.vectors`` (a word-vectors file) initialises a text model's embedding; a model
    rebuilt from a checkpoint skips that (``load_vectors=False``): its weights are saved."""
    node = OmegaConf.create(model_cfg) if not isinstance(model_cfg, DictConfig) else model_cfg
    node = OmegaConf.masked_copy(node, [k for k in node if k != "vectors"])
    net_cls = _import(node["_target_"])
    wants, gives = getattr(net_cls, "modality", None), data_info["modality"]
    if wants is not None and wants != gives:
        raise ConfigError(f"model {net_cls.__name__} takes {wants} input but data "
                          f"{data_info.get('name', '')} gives {gives}: use "
                          f"{MODELS_FOR[gives]}, or {DATA_FOR[wants]} for this model")
    net = build_node(node, **data_info["net_kwargs"])
    vectors = model_cfg.get("vectors")
    if vectors and load_vectors:
        _load_vectors(net, vectors, data_info)
    return net


MODELS_FOR = {"image": "model=cnn or model=mlp", "text": "model=lstm (or gru, rnn)"}
DATA_FOR = {"image": "data=mnist", "text": "data=imdb"}


def _load_vectors(net: nn.Module, path: str, data_info: dict) -> None:
    from dlexp.models.word_vectors import load_word_vectors

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


def _import(target: str) -> type:
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception as e:
        raise ConfigError(f"model target {target!r} cannot be imported: {e}") from None


def build_loss(loss_cfg: DictConfig | dict, datamodule: Any) -> nn.Module:
    node = dict(OmegaConf.to_container(loss_cfg, resolve=True)
                if isinstance(loss_cfg, DictConfig) else loss_cfg)
    spec = node.pop("class_weights", None)
    counts = datamodule.class_counts() if spec == "balanced" else None
    return build_node(OmegaConf.create(node), weight=class_weights(spec, counts))


def build_task(cfg: DictConfig, net: nn.Module, datamodule: Any) -> ClassificationTask:
    optimizer = build_node(cfg.optimizer)
    scheduler = build_node(cfg.scheduler.builder) if cfg.scheduler.get("builder") else None
    _check_optimizer(net, optimizer, scheduler)
    return task_class(cfg)(
        net=net,
        optimizer=optimizer,
        num_classes=datamodule.num_classes,
        loss=build_loss(cfg.loss, datamodule),
        regularization=build_node(cfg.regularization),
        scheduler=scheduler,
        scheduler_interval=cfg.scheduler.interval,
        scheduler_monitor=cfg.scheduler.monitor,
        checkpoint_extras=checkpoint_extras(cfg, datamodule),
    )


def task_class(cfg: DictConfig) -> Any:
    """The method's LightningModule (``method.task``: a partial with its own options)."""
    node = (cfg.get("method") or {}).get("task")
    return build_node(node, _partial_=True) if node else ClassificationTask


def build_method_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Callbacks that implement the training method (``method.callbacks``, e.g. pseudo_label)."""
    return build_group((cfg.get("method") or {}).get("callbacks"))


def apply_transfer(cfg: DictConfig, net: nn.Module, data_info: dict | None = None
                   ) -> list[L.Callback]:
    """Load ``transfer.source`` into the fresh network and freeze per ``transfer.mode``; returns
    the callbacks the mode needs during fit."""
    from dlexp import transfer

    node = cfg.get("transfer")
    if not node or node.mode == "none":
        return []
    if node.mode == "gradual" and "onecycle" in str(cfg.scheduler.get("builder")).lower():
        raise ConfigError("transfer=gradual adds the backbone to the optimizer mid-run, which "
                          "scheduler=onecycle cannot follow; use scheduler=none, step or cosine")
    return transfer.apply(net, cfg.model._target_, data_info=data_info,
                          **OmegaConf.to_container(node, resolve=True))


def _check_optimizer(net: nn.Module, optimizer: Any, scheduler: Any) -> None:
    """Build optimizer and scheduler once on the real parameters, so a bad lr or momentum
    fails now, not after the data has loaded."""
    try:
        opt = optimizer([p for p in net.parameters() if p.requires_grad])
        for group in opt.param_groups[:1]:  # what torch accepts but cannot train with
            if isinstance(group["lr"], int | float) and group["lr"] <= 0:
                raise ValueError(f"optimizer.lr must be > 0, got {group['lr']}")
            if not 0 <= group.get("momentum", 0) < 1:
                raise ValueError(f"optimizer.momentum must be in [0, 1), got {group['momentum']}")
        if scheduler is not None:
            scheduler(opt, Horizon(total_steps=10, max_epochs=1))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optimizer/scheduler: {e}") from None


def checkpoint_extras(cfg: DictConfig, datamodule: Any) -> dict:
    """Plain data (no pickled objects) that rebuilds the network and its input pipeline."""
    keep = ("model", "data", "loss", "task_name", "seed")
    config = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k])
              else cfg[k] for k in keep if k in cfg}
    return {"format": CHECKPOINT_FORMAT, "config": config, "data": datamodule.describe()}


def build_group(nodes: Any) -> list:
    """Instantiate every entry of a name -> node mapping; removed (null) entries are skipped."""
    return [build_node(n) for n in (nodes or {}).values() if n is not None and "_target_" in n]


def build_callbacks(cfg: DictConfig, has_logger: bool = True) -> list[L.Callback]:
    callbacks = build_group(cfg.get("callbacks"))
    if not has_logger:  # the LR monitor writes to a logger and refuses to run without one
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not has_validation(cfg):
        callbacks = _without_validation(callbacks)
    return callbacks


METRICS = ["val/acc", "val/loss", "val/f1", "train/acc", "train/f1", "train/loss_epoch"]


def check_monitor(cfg: DictConfig) -> None:
    """A misspelt monitor would only fail after the first epoch; check it before training."""
    metric, mode = cfg.monitor.metric, cfg.monitor.mode
    if metric not in METRICS:
        raise ConfigError(f"monitor.metric={metric} is not a metric dlexp logs; choose one of "
                          f"{', '.join(METRICS)}")
    if mode not in ("min", "max"):
        raise ConfigError(f"monitor.mode must be min or max, got {mode}")


def has_validation(cfg: DictConfig) -> bool:
    """``data.val_size=0`` trains on the whole training set and validates nothing, as Keras'
    ``fit`` without ``validation_split`` (the course's runs)."""
    return cfg.data.get("val_size", 1) != 0


def check_without_validation(cfg: DictConfig, sweeping: bool = False) -> None:
    """What cannot run without a validation set fails before training, with the fix."""
    if has_validation(cfg):
        return
    if sweeping and _watches_val(cfg.monitor.metric):
        raise ConfigError(f"a sweep optimises monitor.metric={cfg.monitor.metric}, but "
                          f"data.val_size=0 leaves no validation set: set "
                          f"monitor.metric=train/acc or data.val_size > 0")
    for name, node in (cfg.get("callbacks") or {}).items():
        if node and _watches_val(node.get("monitor")) and "EarlyStopping" in node.get("_target_"):
            raise ConfigError(f"callbacks.{name} watches {node.monitor}, but data.val_size=0 "
                              f"leaves no validation set: add callbacks=no_early_stopping (or "
                              f"~callbacks.{name}), or set data.val_size > 0")
    builder = str((cfg.scheduler.get("builder") or {}).get("_target_", ""))
    if builder.endswith("plateau") and _watches_val(cfg.scheduler.get("monitor")):  # the only
        # scheduler that reads its monitor (Lightning ignores it for the others)
        raise ConfigError(f"the {cfg.scheduler.builder._target_.rsplit('.', 1)[-1]} scheduler "
                          f"watches {cfg.scheduler.monitor}, but data.val_size=0 leaves no "
                          f"validation set: pick another scheduler or set data.val_size > 0")


def _watches_val(monitor: Any) -> bool:
    return isinstance(monitor, str) and monitor.startswith("val/")


def _without_validation(callbacks: list[L.Callback]) -> list[L.Callback]:
    """A "best" checkpoint needs a validation metric: keep the ones that need none (last)."""
    return [c for c in callbacks if not (isinstance(c, ModelCheckpoint) and _watches_val(c.monitor))]


def token_decoder(data_info: dict) -> Callable[[list[int]], str] | None:
    """Token ids back to text, for text data (misclassified reviews); None for images."""
    if "tokenizer" not in data_info:
        return None
    from dlexp.data.text import from_json

    return from_json(data_info["tokenizer"]).decode


def build_loggers(cfg: DictConfig) -> list:
    return build_group(cfg.get("logger"))


def load_checkpoint(path: str | Path) -> dict:
    """Read a dlexp checkpoint without unpickling arbitrary objects (weights_only=True)."""
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
    return ckpt


def check_same_model(ckpt: dict, cfg: DictConfig, path: str) -> None:
    """Resuming needs the same network: compare the class and the parameter shapes."""
    saved = ckpt["dlexp"]["config"]["model"]
    if saved["_target_"] != cfg.model._target_:
        raise CheckpointError(f"{path} holds a {model_name(ckpt['dlexp']['config'])} but this "
                              f"run builds a {model_name(cfg)}; pick model={_short(saved)} or "
                              "another checkpoint")


def _short(model_cfg: dict) -> str:
    return model_cfg["_target_"].rsplit(".", 2)[-2]


def check_state_dict(task: nn.Module, ckpt: dict, path: str) -> None:
    own = task.state_dict()
    bad = [k for k, v in ckpt["state_dict"].items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in ckpt["state_dict"]]
    if bad or missing:
        what = bad[:3] or missing[:3]
        raise CheckpointError(f"{path} does not fit this model: {len(bad)} shape mismatches, "
                              f"{len(missing)} missing tensors (e.g. {', '.join(what)}); was it "
                              "trained with other model settings?")


def task_from_checkpoint(ckpt: dict, path: str, datamodule: Any | None = None
                         ) -> ClassificationTask:
    """Rebuild the trained network from a checkpoint's own ``dlexp`` section (no run dir)."""
    extras = ckpt["dlexp"]
    net = build_net(extras["config"]["model"], extras["data"], load_vectors=False)
    loss = build_loss(extras["config"]["loss"], datamodule) if datamodule is not None else None
    task = ClassificationTask(net, optimizer=torch.optim.SGD,
                              num_classes=extras["data"]["num_classes"], loss=loss,
                              checkpoint_extras=extras)
    check_state_dict(task, ckpt, path)
    task.load_state_dict(ckpt["state_dict"], strict=False)
    return task.eval()
