"""``python eval.py ckpt_path=PATH``: evaluate any checkpoint on the test set, print and write
``metrics.json`` in ``outputs/eval/runs/<stamp>/``."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from dlexp import wiring
from dlexp.callbacks.test_figures import TestFigures
from dlexp.errors import user_message
from dlexp.runinfo import write_metrics

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
log = logging.getLogger("dlexp.eval")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    path = str(Path(cfg.ckpt_path).expanduser().resolve())
    ckpt = wiring.load_checkpoint(path)
    data_cfg = OmegaConf.create(ckpt["dlexp"]["config"]["data"])
    data_cfg.root = cfg.data_dir
    if cfg.get("eval_batch_size"):
        data_cfg.eval_batch_size = cfg.eval_batch_size
    datamodule = wiring.build_node(data_cfg)
    task = wiring.task_from_checkpoint(ckpt, path, datamodule)
    figures = TestFigures(datamodule.class_names, str(out_dir / "figures"),
                          wiring.token_decoder(ckpt["dlexp"]["data"]))
    trainer = wiring.build_trainer(cfg.trainer, [figures], logger=False,
                                   default_root_dir=str(out_dir))
    results = trainer.test(task, datamodule=datamodule)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    return {"status": "ok", "ckpt_path": path, **metrics,
            "wall_s": round(time.perf_counter() - start, 2)}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    out = Path(cfg.paths.output_dir)
    try:
        metrics = evaluate(cfg)
    except Exception as exc:
        message = user_message(exc)
        write_metrics(out / "metrics.json", {"status": "failed", "ckpt_path": cfg.ckpt_path,
                                             "error": message or repr(exc)})
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    write_metrics(out / "metrics.json", metrics)
    log.info("test/acc %.4f  test/loss %.4f  (%s)", metrics.get("test/acc", float("nan")),
             metrics.get("test/loss", float("nan")), out / "metrics.json")
    return metrics.get("test/acc", float("nan"))


if __name__ == "__main__":
    main()
