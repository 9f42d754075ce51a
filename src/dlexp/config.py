"""What a composed config must satisfy before anything runs: every check here reads the config
alone (and class attributes), so a bad setting fails in a second, before data is read."""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import inspect
import logging
import math
import re
import types
import typing
from importlib.resources import files
from typing import Any

from hydra.utils import get_object
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ValidationError

from dlexp import backends, hardware, plugins
from dlexp.builders import TASK_ARGS, check_label_kind, target_class
from dlexp.data.table import is_multilabel
from dlexp.errors import ConfigError
from dlexp.task import ClassificationTask

log = logging.getLogger("dlexp.config")

# the metrics the task logs, which checkpointing and sweeps may select on
METRICS = ["val/acc", "val/loss", "val/f1", "val/ppl", "train/acc", "train/f1", "train/loss_epoch"]
MODELS_FOR = {"image": "model=cnn, mlp or resnet18", "text": "model=lstm, gru or rnn"}
DATA_FOR = {"image": "data=mnist, image_folder or arrays",
            "text": "data=imdb, text_table or text_folder"}


def check(cfg: DictConfig, sweeping: bool = False) -> None:
    """All checks of a training config; ``sweeping``: a multirun job, whose monitored metric a
    sweeper compares."""
    check_top_level(cfg)
    check_required(cfg)
    check_loggers(cfg)
    check_types(cfg)
    check_finite(cfg)
    check_seed(cfg)
    backends.check(cfg)
    check_monitor(cfg)
    check_pair(cfg)
    check_precision(cfg)
    check_without_validation(cfg, sweeping)
    check_transfer(cfg)
    check_sampler(cfg)
    check_multilabel(cfg)
    check_method(cfg)
    check_weights(cfg)


def primary_config(name: str = "train") -> DictConfig:
    return OmegaConf.create(files("dlexp.conf").joinpath(f"{name}.yaml").read_text())


def check_top_level(cfg: DictConfig) -> None:
    """``+modell=cnn`` (Hydra's own suggestion for a misspelt group) adds a key nothing reads:
    refuse top-level names that are neither a group nor a setting of conf/train.yaml."""
    primary = primary_config()
    groups = {next(iter(d)) for d in primary.defaults if not isinstance(d, str)}
    known = (set(primary) - {"defaults"}) | {g.removeprefix("override ") for g in groups}
    for name in sorted(set(cfg) - known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown setting {name!r}{hint}: train.py reads the groups and keys "
                          f"of conf/train.yaml: {', '.join(sorted(known))}")


def check_required(cfg: DictConfig) -> None:
    """A setting a config leaves to the user (``???``, such as ``data.path`` of
    ``data=arrays``) is named before anything reads it."""
    for path, node in _target_nodes(cfg, ""):
        for key in node:
            if OmegaConf.is_missing(node, key):
                raise ConfigError(f"{path}{key} is required: add {path}{key}=... to the command")


# a logger class -> the optional package it needs (its extra: plugins.EXTRAS)
LOGGER_PACKAGES = {"MLFlowLogger": "mlflow", "WandbLogger": "wandb"}


def check_loggers(cfg: DictConfig) -> None:
    """A logger whose package is an extra that is not installed (``logger=mlflow`` without
    ``dlexp[mlflow]``) is named with its install command, before anything runs."""
    for name, node in (cfg.get("logger") or {}).items():
        if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
            continue  # not a logger entry: instantiating says so
        bases = {c.__name__ for c in target_class(node, f"logger.{name}").__mro__}
        for base, package in LOGGER_PACKAGES.items():
            if base in bases and not plugins.installed(package):
                raise ConfigError(plugins.needs(f"logger.{name}", package))


@dataclasses.dataclass
class RunSettings:
    """The types of conf/train.yaml's own settings (the groups have their code's types)."""

    task_name: str = MISSING
    tags: list[str] = MISSING
    seed: int = MISSING
    ckpt_path: str | None = MISSING
    test: bool = MISSING
    compile: Any = MISSING  # false, true, or a backend's name
    threads: int | None = MISSING
    keep_memory: bool = MISSING
    matmul_precision: str | None = MISSING
    monitor: dict[str, str] = MISSING


def check_types(cfg: DictConfig) -> None:
    """Every setting has the type its code declares, before anything runs:
    ``trainer.max_epochs=ten`` names the key and the type ``lightning.pytorch.Trainer``
    expects. The schemas are structured configs (dataclasses) made from the signatures of the
    ``_target_`` classes and functions, so a new model or callback needs no schema of its own;
    :class:`RunSettings` types the top-level settings."""
    own = {k: cfg[k] for k in (f.name for f in dataclasses.fields(RunSettings)) if k in cfg}
    _validate(RunSettings, own, "", "conf/train.yaml")
    for path, node in _target_nodes(cfg, ""):
        target = node["_target_"]
        schema = _signature_schema(target)
        if schema is None:
            continue
        given = {f.name: node[f.name] for f in dataclasses.fields(schema) if f.name in node}
        _validate(schema, given, path, target)


def _validate(schema: type, given: dict[str, Any], path: str, owner: str) -> None:
    hints = typing.get_type_hints(schema)
    try:
        OmegaConf.merge(OmegaConf.structured(schema), given)
    except ValidationError as e:
        raise _type_error(path, e.key, str(e).splitlines()[0], hints, owner) from None
    for key, value in given.items():  # OmegaConf would read the text '1' as a number
        if isinstance(value, str) and _plain(hints.get(key)) in (int, float, bool):
            raise _type_error(path, key, f"got the text {value!r}", hints, owner)


def _type_error(path: str, key: Any, problem: str, hints: dict, owner: str) -> ConfigError:
    name = f"{path}{key}" if key is not None else path.rstrip(".")
    wanted = f"; {owner} expects {_type_name(hints[key])}" if key in hints else ""
    return ConfigError(f"{name}: {problem}{wanted}")


def _plain(hint: Any) -> Any:
    """int for int and int | None, and so on."""
    inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return inner[0] if len(inner) == 1 else None


def _target_nodes(node: Any, path: str) -> typing.Iterator[tuple[str, DictConfig]]:
    """(dotted path with a trailing dot, node) for every config node with a ``_target_``."""
    if isinstance(node, DictConfig):
        if isinstance(node.get("_target_"), str):
            yield path, node
        for key in node:
            if key != "hydra":
                yield from _target_nodes(node._get_node(key), f"{path}{key}.")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from _target_nodes(item, f"{path}{i}.")


@functools.cache
def _signature_schema(target: str) -> type | None:
    """A dataclass with one field per parameter of ``target`` (a class's ``__init__``, or a
    function), typed as far as OmegaConf can check it; None when it cannot be read."""
    try:
        obj = get_object(target)
        fn = obj.__init__ if inspect.isclass(obj) else obj
        hints = typing.get_type_hints(fn)
        params = inspect.signature(fn).parameters
    except Exception:
        return None
    fields = [(name, _checkable(hints.get(name, Any)), dataclasses.field(default=MISSING))
              for name, p in params.items() if name != "self"
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return dataclasses.make_dataclass(f"{target.rsplit('.', 1)[-1]}Settings", fields)


PLAIN = (int, float, bool, str)
CONTAINERS = (list, tuple, collections.abc.Sequence)


def _checkable(hint: Any) -> Any:
    """The part of a type hint that OmegaConf can check: int, float, bool, str, or one of them
    or None; members no config can hold (tensors, callables) are dropped. Else Any."""
    if hint in PLAIN:
        return hint
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return Any
    members = set(typing.get_args(hint))
    optional = type(None) in members
    plain = members & set(PLAIN)
    if plain == {int, float}:
        plain = {float}
    if len(plain) != 1 or any(typing.get_origin(m) in (typing.Literal, *CONTAINERS)
                              for m in members):  # str | list[str]: a list is fine too
        return Any
    (kind,) = plain
    return kind | None if optional else kind


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
    if hint in names:
        return names[hint]
    inner = [a for a in typing.get_args(hint) if a is not type(None)]
    return f"{names.get(inner[0], inner[0])} or null" if len(inner) == 1 else str(hint)


def check_finite(cfg: DictConfig) -> None:
    """No setting of dlexp's means NaN or infinity; caught here, they would surface as a
    diverged loss or a message about something else."""
    def walk(node: Any, path: str) -> None:
        if isinstance(node, DictConfig):
            for key in node:
                if key != "hydra":
                    walk(node._get_node(key), f"{path}{key}.")
        elif isinstance(node, ListConfig):
            for i in range(len(node)):
                walk(node._get_node(i), f"{path}{i}.")
        elif isinstance(value := node._value(), float) and not math.isfinite(value):
            raise ConfigError(f"{path.rstrip('.')} must be a finite number, got {value}")

    walk(cfg, "")


def check_seed(cfg: DictConfig) -> None:
    if not 0 <= cfg.seed < 2**32:  # numpy's range, which Lightning seeds too
        raise ConfigError(f"seed must be a whole number in [0, 2**32), got {cfg.seed}")


def check_monitor(cfg: DictConfig) -> None:
    """A misspelt monitor would only fail after the first epoch."""
    metric, mode = cfg.monitor.metric, cfg.monitor.mode
    if metric not in METRICS:
        raise ConfigError(f"monitor.metric={metric} is not a metric dlexp logs; choose one of "
                          f"{', '.join(METRICS)}")
    if mode not in ("min", "max"):
        raise ConfigError(f"monitor.mode must be min or max, got {mode}")


def check_pair(cfg: DictConfig) -> None:
    """The model must take what the data gives (images or text): read from the classes'
    ``modality``, before anything is built or read."""
    net_cls, data_cls = target_class(cfg.model, "model"), target_class(cfg.data, "data")
    wants, gives = getattr(net_cls, "modality", None), getattr(data_cls, "modality", None)
    if wants is not None and gives is not None and wants != gives:
        raise ConfigError(f"model {net_cls.__name__} takes {wants} input but data "
                          f"{data_name(cfg)} gives {gives}: use {MODELS_FOR[gives]}, or "
                          f"{DATA_FOR[wants]} for this model")


def check_precision(cfg: DictConfig) -> None:
    """A precision this CPU cannot serve: refused (an LSTM whose bf16 primitive oneDNN lacks
    here, which fails at the first step) or named in one warning (bf16 emulated, or measured no faster)."""
    precision, accelerator = cfg.trainer.get("precision"), str(cfg.trainer.get("accelerator"))
    if str(precision) == hardware.AUTO:
        return
    if cfg.model.get("cell") == "lstm" and hardware.lstm_bf16_missing(precision, accelerator):
        raise ConfigError(f"trainer.precision={precision}: oneDNN has no bf16 LSTM on this CPU "
                          f"({hardware.cpu_info().cpu_class}), so the first step would fail; "
                          "use trainer.precision=auto (float32 here) or 32-true")
    warning = hardware.slow_bf16_warning(precision, accelerator)
    if warning:
        log.warning(warning)


def data_name(cfg: DictConfig) -> str:
    """The data group's name, from its class: TextTableDataModule -> text_table."""
    name = target_class(cfg.data, "data").__name__.removesuffix("DataModule")
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


def has_validation(cfg: DictConfig) -> bool:
    """``data.val_size=0`` trains on the whole training set and validates nothing, as Keras'
    ``fit`` without ``validation_split`` (the course's runs)."""
    return cfg.data.get("val_size", 1) != 0


def check_without_validation(cfg: DictConfig, sweeping: bool = False) -> None:
    """What cannot run without a validation set fails before training, with the fix."""
    if has_validation(cfg):
        return
    if sweeping and watches_val(cfg.monitor.metric):
        raise ConfigError(f"a sweep optimises monitor.metric={cfg.monitor.metric}, but "
                          f"data.val_size=0 leaves no validation set: set "
                          f"monitor.metric=train/acc or data.val_size > 0")
    for name, node in (cfg.get("callbacks") or {}).items():
        if node and watches_val(node.get("monitor")) and "EarlyStopping" in node.get("_target_"):
            raise ConfigError(f"callbacks.{name} watches {node.monitor}, but data.val_size=0 "
                              f"leaves no validation set: add callbacks=no_early_stopping (or "
                              f"~callbacks.{name}), or set data.val_size > 0")
    builder = str((cfg.scheduler.get("builder") or {}).get("_target_", ""))
    if builder.endswith("plateau") and watches_val(cfg.scheduler.get("monitor")):  # the only
        # scheduler that reads its monitor (Lightning ignores it for the others)
        raise ConfigError(f"the {builder.rsplit('.', 1)[-1]} scheduler watches "
                          f"{cfg.scheduler.monitor}, but data.val_size=0 leaves no validation "
                          f"set: pick another scheduler or set data.val_size > 0")


def watches_val(monitor: Any) -> bool:
    return isinstance(monitor, str) and monitor.startswith("val/")


def check_method(cfg: DictConfig) -> None:
    """A method that serves its own data (``method.data``: language_model) has no test stage;
    the language model trains a text network's encoder, forward only; adversarial training
    perturbs a text network's embeddings."""
    check_task_options(cfg.method.task, cfg.method.name)
    if cfg.method.name == "adversarial" and not _text_model(cfg):
        raise ConfigError("method=adversarial perturbs word embeddings: use data=imdb (or your "
                          "texts) with model=lstm, gru or rnn")
    if cfg.method.name == "language_model":
        if not _text_model(cfg):
            raise ConfigError("method=language_model pretrains a text model: use data=imdb (or "
                              "your texts) with model=lstm, gru or rnn")
        bidirectional = bool(cfg.model.get("bidirectional"))
        if bidirectional and cfg.model.get("num_layers", 1) > 1:
            raise ConfigError("method=language_model trains each direction of a one-layer "
                              "encoder as its own language model; a stacked bidirectional "
                              "one's upper layers read both directions: set "
                              "model.num_layers=1 or model.bidirectional=false")
        if bool(cfg.method.data.get("backward")) != bidirectional:
            given = str(bool(cfg.method.data.get("backward"))).lower()
            raise ConfigError(f"method.data.backward={given} but model.bidirectional="
                              f"{str(bidirectional).lower()}: a backward language model "
                              "trains the backward cells; leave method.data.backward to read "
                              "model.bidirectional")
    if cfg.method.get("data") and cfg.test:
        raise ConfigError(f"method={cfg.method.name} has no test stage (the test split stays "
                          "unseen until a classifier is tested): set test=false")


def check_task_options(node: DictConfig, method: str) -> None:
    """Every ``method.task`` key is an argument of the method's task class (a preset's option
    left behind by ``method=...`` on the command line would stop the run at its build)."""
    task = target_class(node, "method.task")
    defaults: dict[str, Any] = {}
    for cls in task.__mro__:
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters.values()
        named = {p.name: p.default for p in params
                 if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"
                 and not (cls is ClassificationTask and p.name in TASK_ARGS)}
        defaults = named | defaults  # a subclass's default wins
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    options = sorted(defaults)
    unknown = sorted(set(node) - set(options) - {"_target_", "_partial_"})
    if unknown:
        raise ConfigError(f"method={method} has no option {', '.join(unknown)} "
                          f"(method.task.{unknown[0]}); its options: "
                          f"{', '.join(options) or 'none'}")
    given = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items()
             if not k.startswith("_")}
    if hasattr(task, "check_options"):
        try:
            task.check_options(**(defaults | given))
        except ValueError as e:
            raise ConfigError(str(e)) from None


def _text_model(cfg: DictConfig) -> bool:
    return getattr(target_class(cfg.model, "model"), "modality", None) == "text"


def check_transfer(cfg: DictConfig) -> None:
    node = cfg.get("transfer")
    if node and node.mode == "gradual" and "onecycle" in str(cfg.scheduler.get("builder")).lower():
        raise ConfigError("transfer=gradual adds the backbone to the optimizer mid-run, which "
                          "scheduler=onecycle cannot follow; use scheduler=none, step or cosine")
    start = cfg.model.get("weights") or (cfg.model.get("pretrained") and "imagenet")
    if node and node.mode != "none" and not node.get("source") and not start:
        raise ConfigError(f"transfer={node.mode} needs transfer.source=<a .ckpt from python "
                          "train.py> (or model=resnet18 with model.weights=imagenet or a .pth "
                          "file)")
    if node and node.mode != "none" and node.get("source") and start:
        raise ConfigError(f"model.weights={start} and transfer.source both set the backbone "
                          "(the source's replaces the other): drop one of them")


def check_sampler(cfg: DictConfig) -> None:
    """Balanced batches and a class-weighted loss both undo the imbalance: together they
    over-correct it, favouring the small classes. A language model reads no classes; label
    sets (multi-label data) have no one class to balance."""
    if cfg.data.get("sampler") != "balanced":
        return
    if cfg.method.get("data"):
        raise ConfigError(f"data.sampler=balanced draws classes, but method={cfg.method.name} "
                          "serves its own unlabeled data: set data.sampler=null")
    if multilabel(cfg):
        raise ConfigError("data.sampler=balanced draws one class per example, but this data is "
                          "multi-label: set data.sampler=null (loss.pos_weight=balanced weighs "
                          "rare labels up)")
    if cfg.loss.get("class_weights") is not None:
        raise ConfigError("data.sampler=balanced already evens out the classes in each epoch; "
                          f"loss.class_weights={cfg.loss.class_weights} would weight them again: "
                          "use one of them (loss=cross_entropy with the sampler)")


def multilabel(cfg: DictConfig) -> bool:
    """Label sets (``data.label_sep``) or a list of 0/1 label columns: multi-label data."""
    return is_multilabel(cfg.data.get("label_column"), cfg.data.get("label_sep"))


def check_multilabel(cfg: DictConfig) -> None:
    """The loss and method that the kind of labels needs, before any data is read (the task's
    build checks the data's own word on it again)."""
    if cfg.method.get("data"):  # a language model: no labels, no classification loss
        return
    check_label_kind(multilabel(cfg), cfg.loss, cfg.method.get("name", "supervised"))


def check_weights(cfg: DictConfig) -> None:
    """A network's starting weights (``model.weights`` of model=resnet18): read, or fetched,
    now, so a missing file or an offline ImageNet download fails before any data is read."""
    check = getattr(target_class(cfg.model, "model"), "check_weights", None)
    if check is None:
        return
    given = {k: cfg.model[k] for k in ("weights", "pretrained") if k in cfg.model}
    try:
        check(**given)
    except ValueError as e:
        raise ConfigError(str(e)) from None
