"""``python train.py [overrides]``: seed, instantiate, fit, test the best checkpoint, and record
everything in the run directory (config, checkpoints, TensorBoard logs, metrics.json)."""

from __future__ import annotations

import difflib
import logging
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from dlexp import cluster, wiring
from dlexp.callbacks.test_figures import TestFigures
from dlexp.callbacks.throughput import TrainThroughput
from dlexp.callbacks.training_curves import TrainingCurves
from dlexp.errors import ConfigError, user_message
from dlexp.runinfo import flat_hparams, is_rank_zero, quiet_lightning_notices, write_metrics

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
log = logging.getLogger("dlexp.train")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; always returns the metrics dict (``status`` ok or failed)."""
    start = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {"status": "running", "run_dir": str(out_dir),
                               "monitor": cfg.monitor.metric}
    try:
        with cluster.ddp_children_in_this_job(cfg):  # DDP ranks 1..N-1 rejoin this sweep job
            metrics.update(_fit_and_test(cfg, out_dir))
        metrics["status"] = "ok"
    except (KeyboardInterrupt, SystemExit):  # Ctrl+C: Lightning shuts down and exits with 1
        last = out_dir / "checkpoints" / "last.ckpt"
        kept = f"; {last} holds the last completed epoch" if last.is_file() else ""
        metrics.update(status="interrupted",
                       error=f"interrupted (Ctrl+C or a signal) before the run finished{kept}")
        raise
    except Exception as exc:  # recorded, so a sweep goes on and a report shows the failure
        message = user_message(exc)
        metrics.update(status="failed", error=message or f"{type(exc).__name__}: {exc}")
        if is_rank_zero():
            (out_dir / "error.log").write_text(traceback.format_exc())
        if message is None:  # a bug, not bad input: keep the traceback in the log
            log.exception("training failed")
    finally:
        metrics["wall_s"] = round(time.perf_counter() - start, 2)
        if is_rank_zero():
            write_metrics(out_dir / "metrics.json", metrics)
    return metrics


def check_top_level(cfg: DictConfig) -> None:
    """``+modell=cnn`` (Hydra's own suggestion for a misspelt group) adds a key nothing reads:
    refuse top-level names that are neither a group nor a setting of conf/train.yaml."""
    primary = OmegaConf.load(Path(CONFIG_DIR) / "train.yaml")
    groups = {next(iter(d)) for d in primary.defaults if not isinstance(d, str)}
    known = (set(primary) - {"defaults"}) | {g.removeprefix("override ") for g in groups}
    for name in sorted(set(cfg) - known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown setting {name!r}{hint}: train.py reads the groups and keys "
                          f"of conf/train.yaml: {', '.join(sorted(known))}")


def _fit_and_test(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    check_top_level(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("threads") is not None:
        if not isinstance(cfg.threads, int) or cfg.threads < 1:
            raise ConfigError(f"threads must be a whole number >= 1 (or null), got {cfg.threads}")
        torch.set_num_threads(cfg.threads)
    wiring.check_monitor(cfg)
    wiring.check_without_validation(cfg, sweeping=_sweeping())
    datamodule = wiring.build_datamodule(cfg)
    data_info = datamodule.describe()
    net = wiring.build_net(cfg.model, data_info)
    method_callbacks = (wiring.apply_transfer(cfg, net, data_info)
                        + wiring.build_method_callbacks(cfg))
    _save_tokenizer(data_info, out_dir)
    task = wiring.build_task(cfg, net, datamodule)
    ckpt_path = _resume_checkpoint(cfg, task, out_dir)
    if cfg.get("compile"):
        task.net = torch.compile(task.net)
    throughput = TrainThroughput()
    loggers = wiring.build_loggers(cfg)
    callbacks = wiring.build_callbacks(cfg, has_logger=bool(loggers)) + method_callbacks + [
        throughput, TrainingCurves(str(out_dir / "figures")),
        TestFigures(datamodule.class_names, str(out_dir / "figures"),
                    wiring.token_decoder(data_info))]
    validate = wiring.has_validation(cfg)
    no_val = {} if validate else {"limit_val_batches": 0, "num_sanity_val_steps": 0}
    trainer: L.Trainer = wiring.build_trainer(cfg.trainer, callbacks, logger=loggers or False,
                                              **no_val)

    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    best = _best_checkpoint(trainer)
    results: dict[str, Any] = {"epoch": trainer.current_epoch, "global_step": trainer.global_step,
                               "best_ckpt": best, "train/samples_per_s": throughput.samples_per_s}
    if not validate:  # data.val_size=0: nothing to validate; the kept checkpoint is the last
        results.update({"val/acc": None, "val/loss": None})
    elif not trainer.fast_dev_run:  # re-validate the checkpoint we keep, not the last epoch
        results.update(_revalidate(trainer, task, datamodule, best))
    else:
        results.update({k: float(v) for k, v in trainer.callback_metrics.items()
                        if k.startswith("val/")})
    if cfg.get("test"):
        results.update(_first(trainer.test(task, datamodule=datamodule, ckpt_path=best)))
    _log_hparams(trainer, cfg, results)
    return results


def _save_tokenizer(data_info: dict, out_dir: Path) -> None:
    """Text data: keep the tokenizer beside the run (the checkpoints carry it too)."""
    if "tokenizer" in data_info and is_rank_zero():
        (out_dir / "tokenizer.json").write_text(data_info["tokenizer"])


def _sweeping() -> bool:
    """A multirun job: its returned metric is what a sweeper compares."""
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _resume_checkpoint(cfg: DictConfig, task: L.LightningModule, out_dir: Path) -> str | None:
    requeued = cluster.requeued_checkpoint(out_dir)  # SLURM requeue: continue this job's own run
    if not (requeued or cfg.get("ckpt_path")):
        return None
    path = requeued or str(Path(cfg.ckpt_path).expanduser().resolve())
    ckpt = wiring.load_checkpoint(path)
    wiring.check_same_model(ckpt, cfg, path)
    wiring.check_state_dict(task, ckpt, path)
    log.info("resuming from %s (epoch %s, step %s)", path, ckpt.get("epoch"),
             ckpt.get("global_step"))
    return path


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    """The monitored best, else the latest (``callbacks.model_checkpoint`` removed)."""
    if trainer.fast_dev_run:
        return None
    saved = [cb for cb in trainer.checkpoint_callbacks if cb.best_model_path]
    ranked = sorted(saved, key=lambda cb: cb.monitor is None)
    return ranked[0].best_model_path if ranked else None


def _revalidate(trainer: L.Trainer, task: L.LightningModule, datamodule: Any,
                ckpt: str | None) -> dict[str, float]:
    """The kept checkpoint's validation metrics, for metrics.json only: logged, they would add a
    last point to every validation curve (the best epoch's value again, one step later)."""
    loggers, trainer.loggers = trainer.loggers, []
    try:
        return _first(trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt,
                                       verbose=False))
    finally:
        trainer.loggers = loggers


def _first(results: list[dict]) -> dict[str, float]:
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def _log_hparams(trainer: L.Trainer, cfg: DictConfig, results: dict[str, Any]) -> None:
    """Fill TensorBoard's hparams tab with the final metrics of this run."""
    finals = {f"hp/{k.replace('/', '_')}": v for k, v in results.items()
              if isinstance(v, float) and math.isfinite(v) and "/" in k}
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    params = flat_hparams(cfg, dict(choices))
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # its hparams tab pairs params with metrics
            logger.log_hyperparams(params, metrics=finals)
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(finals, step=trainer.global_step)


def monitored_value(cfg: DictConfig, metrics: dict[str, Any]) -> float:
    """What sweepers optimise; NaN for a failed run (Optuna records the trial as failed)."""
    value = metrics.get(cfg.monitor.metric)
    return float(value) if isinstance(value, int | float) else float("nan")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    quiet_lightning_notices()
    if is_rank_zero():
        log.info("run directory: %s", cfg.paths.output_dir)
    metrics = train(cfg)
    if metrics["status"] != "ok":
        print(f"error: {metrics['error']}", file=sys.stderr)
        if HydraConfig.get().mode.name == "RUN":  # single run: fail the process
            sys.exit(1)
    elif is_rank_zero():
        shown = {k: metrics.get(k) for k in ("val/acc", "test/acc", "epoch", "wall_s")}
        log.info("done: %s  (%s)", OmegaConf.to_yaml(shown).strip().replace("\n", ", "),
                 Path(cfg.paths.output_dir) / "metrics.json")
    return cluster.sweep_value(monitored_value(cfg, metrics), metrics.get("error"))


if __name__ == "__main__":
    main()
