"""``python train.py [overrides]`` (``dlexp-train``): check the config, instantiate data, network,
task, callbacks, loggers and trainer, fit, test the kept checkpoint, and record the run in its
directory (config, checkpoints, TensorBoard logs, figures, metrics.json)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from dlexp import backends, checkpoint, cluster, config, plugins, transfer
from dlexp.builders import build_callbacks, build_net, build_task
from dlexp.callbacks.evaluation_figures import EvaluationFigures
from dlexp.callbacks.throughput import TrainThroughput
from dlexp.callbacks.training_curves import TrainingCurves
from dlexp.console import print_error, quiet_lightning_notices, run_as_process
from dlexp.errors import Diverged, user_message
from dlexp.hparams import flat_hparams, log_hparams
from dlexp.loggers import build_loggers, finishing, log_params_at_start, log_run_files
from dlexp.record import RunRecord
from dlexp.trainer import build_trainer, resolve_precision

log = logging.getLogger("dlexp.train")


def fit_and_test(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """One run, top to bottom. Everything that can be checked without data is checked first."""
    chosen = resolve_precision(cfg.trainer)
    config.check(cfg, sweeping=cluster.sweeping())
    if chosen and cluster.is_rank_zero():
        log.info("precision: %s (trainer.precision=auto: %s)", cfg.trainer.precision, chosen)
    backends.apply(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    resume = checkpoint.for_resume(cfg, cluster.requeued_checkpoint(out_dir))
    source = transfer.read_source(cfg.transfer, cfg.model._target_)

    datamodule = instantiate(cfg.data)
    transfer.use_source_tokenizer(datamodule, source)  # a text source's words, its embedding's
    if cfg.method.get("data"):  # a method that reads the data its own way (language_model)
        datamodule = instantiate(cfg.method.data, base=datamodule, _convert_="all")
    data_info = datamodule.describe()
    net = build_net(cfg.model, data_info)
    fit_callbacks = transfer.apply(net, cfg.transfer, source, data_info)
    task = build_task(cfg, net, datamodule, checkpoint.extras(cfg, data_info))
    if resume:
        checkpoint.check_fits(task, resume.shapes, resume.path)
    if cfg.compile:
        backends.compile_net(task.net, backends.backend(cfg))
    validate = config.has_validation(cfg)
    params = flat_hparams(cfg, cluster.choices())
    loggers = build_loggers(cfg.logger, out_dir, params)
    with finishing(loggers):
        callbacks = build_callbacks(cfg, has_logger=bool(loggers), validate=validate)
        callbacks += cluster.pruning_callbacks(cfg)  # an Optuna trial under hydra.sweeper.pruner
        trainer = build_trainer(cfg.trainer, callbacks + fit_callbacks, loggers,
                                validate=validate)
        log_params_at_start(trainer, params)
        save_tokenizer(data_info, out_dir)

        started = time.perf_counter()
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume and resume.path)
        cluster.raise_if_pruned(trainer)  # DDP: the ranks stopped together, now say why
        fit_s = round(time.perf_counter() - started, 2)
        results = {"fit_s": fit_s, "precision": str(cfg.trainer.precision),
                   "threads": backends.threads(),
                   **test_kept_checkpoint(trainer, task, datamodule, cfg)}
        log_hparams(trainer, params, results)
        log_run_files(trainer, results)
    return results


def save_tokenizer(data_info: dict, out_dir: Path) -> None:
    """Text data: keep the tokenizer beside the run (the checkpoints carry it too)."""
    if "tokenizer" in data_info and cluster.is_rank_zero():
        (out_dir / "tokenizer.json").write_text(data_info["tokenizer"])


def test_kept_checkpoint(trainer: L.Trainer, task: L.LightningModule, datamodule: Any,
                         cfg: DictConfig) -> dict[str, Any]:
    """The kept checkpoint (the monitored best, else the last) re-validated and tested."""
    best = kept_checkpoint(trainer)
    results: dict[str, Any] = {"epoch": trainer.current_epoch, "global_step": trainer.global_step,
                               "best_ckpt": best, **measured(trainer)}
    if not config.has_validation(cfg):  # data.val_size=0: nothing to validate
        results.update({"val/acc": None, "val/loss": None})
    elif trainer.fast_dev_run:
        results.update({k: float(v) for k, v in trainer.callback_metrics.items()
                        if k.startswith("val/")})
    else:
        results.update(revalidate(trainer, task, datamodule, best))
    if cfg.test:
        results.update(first(trainer.test(task, datamodule=datamodule, ckpt_path=best)))
    return results


def kept_checkpoint(trainer: L.Trainer) -> str | None:
    """The monitored best, else the latest (``callbacks.model_checkpoint`` removed)."""
    if trainer.fast_dev_run:
        return None
    saved = [cb for cb in trainer.checkpoint_callbacks if cb.best_model_path]
    ranked = sorted(saved, key=lambda cb: cb.monitor is None)
    return ranked[0].best_model_path if ranked else None


def revalidate(trainer: L.Trainer, task: L.LightningModule, datamodule: Any,
               ckpt: str | None) -> dict[str, float]:
    """The kept checkpoint's validation metrics, for metrics.json only: logged, they would add a
    last point to every validation curve (the best epoch's value again, one step later)."""
    loggers, trainer.loggers = trainer.loggers, []
    try:
        return first(trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt, verbose=False))
    finally:
        trainer.loggers = loggers


def first(results: list[dict]) -> dict[str, float]:
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


# what dlexp's own callbacks measure, and the setting that turns each off
OWN_CALLBACKS = {TrainThroughput: "train/samples_per_s (callbacks.throughput is off)",
                 TrainingCurves: "figures/curves.png (callbacks.training_curves is off)",
                 EvaluationFigures: "figures of the test (callbacks.evaluation_figures is off)"}


def measured(trainer: L.Trainer) -> dict[str, Any]:
    """Training throughput, and what this run's callbacks could not measure."""
    present = {type(c) for c in trainer.callbacks}
    speed = next((c.samples_per_s for c in trainer.callbacks if isinstance(c, TrainThroughput)),
                 None)
    missing = [what for cls, what in OWN_CALLBACKS.items() if cls not in present]
    if not trainer.checkpoint_callbacks:
        missing.append("checkpoints (no ModelCheckpoint callback: the final weights are tested)")
    return {"train/samples_per_s": speed, **({"not_measured": missing} if missing else {})}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one job; always returns its metrics, also left in ``metrics.json``: ``status`` is
    ``running`` from the start, then ``ok``, ``failed`` (with ``error``), ``diverged``,
    ``interrupted`` or ``pruned`` (an Optuna trial its pruner stopped; ``error`` says when).
    SIGTERM and Ctrl+C stop the process with one ``error:`` line that names the checkpoint to
    resume from, and exit codes 143 and 130."""
    out_dir = Path(cfg.paths.output_dir)
    record = RunRecord(out_dir / "metrics.json", writes=cluster.is_rank_zero(),
                       run_dir=str(out_dir), monitor=cfg.monitor.metric, pid=os.getpid(),
                       host=socket.gethostname())
    try:
        # DDP ranks 1..N-1 rejoin this sweep job
        with cluster.sigterm_stops_the_run(), cluster.ddp_children_in_this_job(cfg):
            record.update(fit_and_test(cfg, out_dir))
    except (cluster.Terminated, SIGTERMException):
        stopped(record, out_dir, "SIGTERM")
        raise cluster.Terminated() from None
    except (KeyboardInterrupt, SystemExit):  # Ctrl+C: Lightning shuts down and exits with 1
        stopped(record, out_dir, "Ctrl+C")
        raise SystemExit(128 + signal.SIGINT) from None
    except Exception as exc:  # recorded, so a sweep goes on and a report shows the failure
        if cluster.pruned(exc):  # the Optuna trial's pruner stopped it: not a failure
            record.finish("pruned", str(exc))
            return record.metrics
        message = user_message(exc)
        if cluster.is_rank_zero():
            (out_dir / "error.log").write_text(traceback.format_exc())
        if message is None:  # a bug, not bad input: keep the traceback in the log
            log.exception("training failed")
        status = "diverged" if isinstance(exc, Diverged) else "failed"
        record.finish(status, message or f"{type(exc).__name__}: {exc}")
    else:
        record.finish("ok")
    return record.metrics


def stopped(record: RunRecord, out_dir: Path, by: str) -> None:
    """Record an interrupted run and say, in one line, how to go on."""
    last = out_dir / "checkpoints" / "last.ckpt"
    how = (f"resume with the same overrides plus ckpt_path={last}" if last.is_file() else
           "no checkpoint was written yet: run it again")
    record.finish("interrupted", f"interrupted by {by} before the run finished; {how}")
    if cluster.is_rank_zero():
        print_error(record.metrics["error"])


def monitored_value(cfg: DictConfig, metrics: dict[str, Any]) -> float:
    """What sweepers optimise; NaN for a failed run."""
    value = metrics.get(cfg.monitor.metric)
    return float(value) if isinstance(value, int | float) else float("nan")


@hydra.main(version_base="1.3", config_path="pkg://dlexp.conf", config_name="train")
def _main(cfg: DictConfig) -> float:
    quiet_lightning_notices()
    if cluster.is_rank_zero():
        log.info("run directory: %s", cfg.paths.output_dir)
    metrics = train(cfg)
    if metrics["status"] == "pruned":
        log.info("%s (%s)", metrics["error"], Path(cfg.paths.output_dir) / "metrics.json")
    elif metrics["status"] != "ok":
        print_error(metrics["error"])
        if not cluster.sweeping():  # single run: fail the process
            sys.exit(1)
    elif cluster.is_rank_zero():
        shown = {k: metrics.get(k) for k in ("val/acc", "test/acc", "epoch", "wall_s")}
        log.info("done: %s  (%s)", OmegaConf.to_yaml(shown).strip().replace("\n", ", "),
                 Path(cfg.paths.output_dir) / "metrics.json")
    return cluster.sweep_value(monitored_value(cfg, metrics), metrics.get("error"),
                               metrics["status"])


def main() -> None:
    """``dlexp-train``: a missing optional plugin is named with its install command before
    Hydra fails on it."""
    plugins.check_installed(sys.argv[1:])
    run_as_process(_main)


class _CallableModule(types.ModuleType):
    """Importing this module binds ``dlexp.train`` to it, in place of the function
    ``dlexp.train(...)``: calling the module does what the function does."""

    def __call__(self, *overrides: str, **options: Any) -> Any:
        from dlexp.api import train as api_train

        return api_train(*overrides, **options)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
