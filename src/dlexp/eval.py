"""``python eval.py ckpt_path=PATH`` (or ``python eval.py PATH``): evaluate any checkpoint on
the test set, print and write ``metrics.json`` in ``outputs/eval/runs/<stamp>/``.

The data is the checkpoint's own data config; ``data.<key>=VALUE`` changes a key of it
(``data.download=false``, ``data.path=new.npz``), and ``data=<group>`` tests on another data
group (``data=arrays data.path=other.npz``, a new folder of the same classes). The input
pipeline (normalisation statistics, tokenizer, input size) is always the checkpoint's, and
data whose classes are not the checkpoint's is refused."""

from __future__ import annotations

import csv
import functools
import inspect
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from dlexp import checkpoint
from dlexp.callbacks.evaluation_figures import EvaluationFigures
from dlexp.console import print_error, quiet_lightning_notices, run_as_process
from dlexp.errors import ConfigError, DataError, user_message
from dlexp.record import write_json
from dlexp.trainer import build_trainer

log = logging.getLogger("dlexp.eval")
USAGE = "python eval.py ckpt_path=<run>/checkpoints/<file>.ckpt"
# Hydra's own flags whose next argument is a value, never a checkpoint path
HYDRA_VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn",
                     "--config-name", "-cd", "--config-dir", "--experimental-rerun"}
DATA_KEY = re.compile(r"^(?:\+\+|\+|~)?data\.([\w.]+)(?:=|$)")  # data.path=x, ++data.x=1, ~data.x
# config keys of the input pipeline that a new data group takes from the checkpoint's config
PIPELINE_KEYS = ("image_size", "channels", "resize", "normalize", "tokenizer", "max_len",
                 "truncate")
# the keys that name the data itself: another value is another dataset
NEW_DATA_KEYS = ("root", "path", "table")
# what describe() says of the input pipeline, compared when a data module cannot take the
# checkpoint's (no use_pipeline)
PIPELINE_INFO = ("mean", "std", "tokenizer", "input_shape", "max_len", "truncate")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ConfigError(f"ckpt_path is required; usage: {USAGE}")
    out_dir = Path(cfg.paths.output_dir)
    path = str(Path(cfg.ckpt_path).expanduser().resolve())
    ckpt = checkpoint.load(path)
    data_cfg = data_config(cfg, ckpt["dlexp"]["config"], _task_overrides(),
                           _choice("data"))
    data_cfg = for_new_data(data_cfg, ckpt["dlexp"]["config"]["data"], ckpt["dlexp"]["data"],
                            out_dir)
    datamodule = instantiate(data_cfg)
    adopt_pipeline(datamodule, ckpt["dlexp"]["data"], data_cfg)
    task = checkpoint.rebuild_task(ckpt, path, datamodule)
    trainer = build_trainer(cfg.trainer, [EvaluationFigures(str(out_dir / "figures"))], [],
                            default_root_dir=str(out_dir))
    results = trainer.test(task, datamodule=datamodule)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if cfg.get("predictions"):
        probs = torch.cat(trainer.predict(task, datamodule=datamodule))
        write = functools.partial(write_label_predictions, threshold=task.threshold) \
            if task.multilabel else write_predictions
        write(out_dir / "predictions.csv", probs, datamodule.test_set[1],
              datamodule.class_names)
    return {"status": "ok", "ckpt_path": path, **metrics,
            "wall_s": round(time.perf_counter() - start, 2)}


def data_config(cfg: DictConfig, saved: dict, overrides: list[str], group: str | None
                ) -> DictConfig:
    """The data config to test on: the checkpoint's (``saved``: its config section), or with
    ``group`` (``data=<group>``) that group's, taking the checkpoint's input-pipeline keys
    (:data:`PIPELINE_KEYS`) unless given; then the ``data.<key>`` ``overrides`` the user gave.
    The data root: ``data.root`` if given, else ``data_dir`` if given, else the checkpoint's
    while it exists (for ``data=image_folder`` it is the dataset itself), else ``data_dir``."""
    base = OmegaConf.create(saved["data"])
    given = [m.group(1) for m in map(DATA_KEY.match, overrides) if m]
    composed = cfg.get("data") or OmegaConf.create({})
    if group is not None and composed.get("_target_") != base.get("_target_"):
        chosen = _resolved_group(cfg, saved, group)
        for key in PIPELINE_KEYS:
            if key in chosen and key in base and key not in given:
                chosen[key] = base[key]
        base = chosen
    for key in given:
        if OmegaConf.select(composed, key, default="<unset>") == "<unset>":  # ~data.key
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(base, parent) if parent else base
            if isinstance(node, DictConfig) and leaf in node:
                del node[leaf]
        else:
            OmegaConf.update(base, key, OmegaConf.select(composed, key), merge=False)
    if "root" in base and "root" not in given and not base.get("table") and (
            _sets("data_dir", overrides)
            or not os.path.exists(str(base.root))):  # an image table has no root
        base.root = cfg.data_dir  # the data moved (another machine), or the user says where
    if cfg.get("eval_batch_size"):
        base.eval_batch_size = cfg.eval_batch_size
    return base


def _sets(key: str, overrides: list[str]) -> bool:
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides)


def _resolved_group(cfg: DictConfig, saved: dict, group: str) -> DictConfig:
    """The chosen data group's config, its ``${seed}`` the checkpoint's and the training
    method's settings (``${method...}``) unset: evaluation has neither."""
    raw = OmegaConf.to_container(cfg.data, resolve=False)
    context = OmegaConf.create({"data": raw, "seed": saved.get("seed", 0),
                                "method": {"unlabeled_ratio": None},
                                "paths": OmegaConf.to_container(cfg.paths, resolve=False)})
    try:
        return OmegaConf.create(OmegaConf.to_container(context.data, resolve=True,
                                                       throw_on_missing=True))
    except MissingMandatoryValue as e:
        raise ConfigError(f"{e.full_key} is required with data={group}: give "
                          f"{e.full_key}=...") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"data={group}: {' '.join(str(e).split())}") from None


def for_new_data(data_cfg: DictConfig, trained: dict, info: dict, out_dir: Path
                 ) -> DictConfig:
    """Data other than the training's (another ``root``, ``path`` or ``table``), for a data
    module that can take it whole (``test_only``): all of it is test data, decoded as training
    decoded its own (the checkpoint's image size, channels and resize mode), nothing written
    beside the training run."""
    takes = "test_only" in inspect.signature(get_class(data_cfg._target_)).parameters
    if not takes or all(data_cfg.get(k) == trained.get(k) for k in NEW_DATA_KEYS):
        return data_cfg
    data_cfg.test_only = True
    for key in ("image_size", "channels", "resize"):
        if key in data_cfg and key in info:
            data_cfg[key] = info[key]
    if "run_dir" in data_cfg:
        data_cfg.run_dir = str(out_dir)
    return data_cfg


def adopt_pipeline(datamodule: Any, saved: dict, data_cfg: DictConfig) -> None:
    """Give the data the checkpoint's input pipeline (``saved``: its data description), through
    the data module's ``use_pipeline`` where it has one, and refuse data whose classes are not
    the checkpoint's: the network's outputs are the checkpoint's classes, in its order."""
    use = getattr(datamodule, "use_pipeline", None)
    if use is not None:
        use(saved)
    info = datamodule.describe()
    check_classes(info.get("class_names") or [], saved.get("class_names") or [], data_cfg)
    if use is None:
        differ = [k for k in PIPELINE_INFO if k in saved and k in info and info[k] != saved[k]]
        if differ:
            log.warning("%s computes its own input pipeline, and its %s differ from the "
                        "checkpoint's: results may not be those of training's pipeline",
                        _data_name(data_cfg), ", ".join(differ))


def check_classes(found: list, trained: list, data_cfg: DictConfig) -> None:
    """DataError, naming the differences, unless ``found`` is ``trained`` (names, in order)."""
    found, trained = [str(c) for c in found], [str(c) for c in trained]
    if found == trained:
        return
    missing = [c for c in trained if c not in found]
    extra = [c for c in found if c not in trained]
    what = "; ".join(part for part in (
        f"missing {_names(missing)}" if missing else "",
        f"not in the checkpoint: {_names(extra)}" if extra else "") if part) \
        or f"the same names in another order ({_names(found)})"
    raise DataError(f"{_data_name(data_cfg)} does not hold the checkpoint's classes: {what}. "
                    f"The model was trained on {len(trained)} classes ({_names(trained)}); "
                    "test it on data of those classes")


def _names(names: list[str], most: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def _data_name(data_cfg: DictConfig) -> str:
    target = str(data_cfg.get("_target_", "the data"))
    where = data_cfg.get("path") or data_cfg.get("root")
    return f"{target.rsplit('.', 1)[-1]}" + (f" ({where})" if where else "")


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _choice(group: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get(group)
    return None if choice in (None, "null") else str(choice)


def write_predictions(path: Path, probs: torch.Tensor, labels: torch.Tensor,
                      class_names: list[str]) -> None:
    """One row per test sample, in the dataset's order: Keras' ``model.predict`` + argmax."""
    confidence, predicted = probs.max(-1)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "predicted", "confidence", "correct",
                         *(f"p_{name}" for name in class_names)])
        for i, (y, p, c, row) in enumerate(zip(labels.tolist(), predicted.tolist(),
                                               confidence.tolist(), probs.tolist(), strict=True)):
            writer.writerow([i, class_names[y], class_names[p], f"{c:.4f}", int(y == p),
                             *(f"{v:.4f}" for v in row)])


def write_label_predictions(path: Path, probs: torch.Tensor, labels: torch.Tensor,
                            class_names: list[str], threshold: float) -> None:
    """Multi-label :func:`write_predictions`: the true and predicted label sets
    (``;``-joined; predicted: probability over ``threshold``), whether they match exactly,
    and every label's probability."""
    def names(row: torch.Tensor) -> str:
        return ";".join(n for n, on in zip(class_names, row.tolist(), strict=True) if on)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "labels", "predicted", "exact", *(f"p_{n}" for n in class_names)])
        for i, (y, p) in enumerate(zip(labels > 0.5, probs, strict=True)):
            pred = p > threshold
            writer.writerow([i, names(y), names(pred), int(bool((pred == y).all())),
                             *(f"{v:.4f}" for v in p.tolist())])


def positional_ckpt(argv: list[str]) -> list[str]:
    """``argv`` with a lone checkpoint path (``eval.py run/checkpoints/best.ckpt``, as
    predict.py takes it) turned into the ``ckpt_path=`` override Hydra expects; quoted, so
    any character a file name may hold survives Hydra's override grammar."""
    found = [i for i, arg in enumerate(argv) if i > 0 and _is_path(arg, argv[i - 1])]
    if len(found) != 1 or any(a.startswith("ckpt_path=") for a in argv[1:]):
        return argv  # none, or ambiguous: leave it to Hydra
    path = argv[found[0]]
    quote = '"' if "'" in path else "'"
    return [*argv[: found[0]], f"ckpt_path={quote}{path}{quote}", *argv[found[0] + 1 :]]


def _is_path(arg: str, previous: str) -> bool:
    if arg.startswith("-") or previous in HYDRA_VALUE_FLAGS:
        return False
    # "key=value.ckpt" is an override; a real file is a path whatever its name holds
    return os.path.isfile(os.path.expanduser(arg)) or (arg.endswith(".ckpt") and "=" not in arg)


def forced_data_keys(argv: list[str]) -> list[str]:
    """``argv`` with each ``data.<key>=VALUE`` made ``++data.<key>=VALUE``: the key may be new
    to this config (the eval config holds no data config of its own; the checkpoint's is
    merged under it later), which Hydra refuses without the ``++``."""
    return [f"++{a}" if i > 0 and a.startswith("data.") and "=" in a else a
            for i, a in enumerate(argv)]


def main() -> None:
    sys.argv = forced_data_keys(positional_ckpt(sys.argv))
    run_as_process(_main)


@hydra.main(version_base="1.3", config_path="pkg://dlexp.conf", config_name="eval")
def _main(cfg: DictConfig) -> float:
    quiet_lightning_notices()
    out = Path(cfg.paths.output_dir)
    try:
        metrics = evaluate(cfg)
    except Exception as exc:
        message = user_message(exc)
        ckpt_path = OmegaConf.select(cfg, "ckpt_path", throw_on_missing=False)
        write_json(out / "metrics.json", {"status": "failed", "ckpt_path": ckpt_path,
                                          "error": message or repr(exc)})
        if message is None:
            raise
        print_error(message)
        sys.exit(1)
    write_json(out / "metrics.json", metrics)
    log.info("test/acc %.4f  test/loss %.4f  (%s)", metrics.get("test/acc", float("nan")),
             metrics.get("test/loss", float("nan")), out / "metrics.json")
    return metrics.get("test/acc", float("nan"))


if __name__ == "__main__":
    main()
