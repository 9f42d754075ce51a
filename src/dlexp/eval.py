"""``python eval.py ckpt_path=PATH`` (or ``python eval.py PATH``): evaluate any checkpoint on
the test set, print and write ``metrics.json`` in ``outputs/eval/runs/<stamp>/``."""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dlexp import checkpoint
from dlexp.callbacks.evaluation_figures import EvaluationFigures
from dlexp.console import print_error, quiet_lightning_notices, run_as_process
from dlexp.errors import ConfigError, user_message
from dlexp.record import write_json
from dlexp.trainer import build_trainer

log = logging.getLogger("dlexp.eval")
USAGE = "python eval.py ckpt_path=<run>/checkpoints/<file>.ckpt"
# Hydra's own flags whose next argument is a value, never a checkpoint path
HYDRA_VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn",
                     "--config-name", "-cd", "--config-dir", "--experimental-rerun"}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ConfigError(f"ckpt_path is required; usage: {USAGE}")
    out_dir = Path(cfg.paths.output_dir)
    path = str(Path(cfg.ckpt_path).expanduser().resolve())
    ckpt = checkpoint.load(path)
    data_cfg = OmegaConf.create(ckpt["dlexp"]["config"]["data"])
    # where the data lives now; data=image_folder's root is the images, data_dir the data folder
    data_cfg["data_dir" if "data_dir" in data_cfg else "root"] = cfg.data_dir
    if cfg.get("eval_batch_size"):
        data_cfg.eval_batch_size = cfg.eval_batch_size
    datamodule = instantiate(data_cfg)
    task = checkpoint.rebuild_task(ckpt, path, datamodule)
    trainer = build_trainer(cfg.trainer, [EvaluationFigures(str(out_dir / "figures"))], [],
                            default_root_dir=str(out_dir))
    results = trainer.test(task, datamodule=datamodule)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if cfg.get("predictions"):
        probs = torch.cat(trainer.predict(task, datamodule=datamodule))
        write_predictions(out_dir / "predictions.csv", probs, datamodule.test_set[1],
                          datamodule.class_names)
    return {"status": "ok", "ckpt_path": path, **metrics,
            "wall_s": round(time.perf_counter() - start, 2)}


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


def main() -> None:
    sys.argv = positional_ckpt(sys.argv)
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
