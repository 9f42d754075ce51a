"""``conf/logger``: the run's loggers, built with what only the run knows (its directory and
settings), and what they are given when it ends.

MLflow (``logger=mlflow``): a SQLite store under ``paths.log_dir`` unless the config names a
server (Lightning would fall back to a ``./mlruns`` file store, which MLflow 3 refuses), the
artifacts beside that store, one experiment per ``task_name``, the run named after its directory,
the settings logged when it starts; at the end the figures go in as artifacts and the kept
checkpoint's path as the tag ``best_ckpt``. W&B (``logger=wandb``): the settings are given to
``wandb.init`` (an offline run keeps no later update), and the run is finished when the job
ends, so the next job of a sweep starts a run of its own."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, MLFlowLogger, WandbLogger
from omegaconf import OmegaConf

from dlexp.builders import entries, target_class
from dlexp.callbacks.evaluation_figures import EvaluationFigures
from dlexp.callbacks.training_curves import TrainingCurves
from dlexp.errors import ConfigError

log = logging.getLogger("dlexp.loggers")
SQLITE = "sqlite:///"


def run_name(run_dir: str | Path) -> str:
    """The run directory's name; for a sweep's job (a numbered folder), the sweep's name and
    the job's number: ``2026-12-04_01-51-53_123456/0``."""
    path = Path(run_dir)
    return f"{path.parent.name}/{path.name}" if path.name.isdigit() else path.name


def build_loggers(nodes: Any, run_dir: str | Path, params: dict[str, Any]) -> list[Logger]:
    """The ``logger`` entries, built; ``params`` are the run's flat settings
    (:func:`dlexp.hparams.flat_hparams`)."""
    built = []
    for name, node in entries(nodes, "logger"):
        cls = target_class(node, f"logger.{name}")
        given: dict[str, Any] = {}
        if issubclass(cls, MLFlowLogger):
            given = mlflow_settings(node, name, run_dir)
        elif issubclass(cls, WandbLogger):
            given = {"name": node.get("name") or run_name(run_dir), "config": params}
        built.append(instantiate(node, _partial_=True, _convert_="all")(**given))
    return built


def log_params_at_start(trainer: L.Trainer, params: dict[str, Any]) -> None:
    """MLflow: the settings in the UI while the run runs, not only once it ends (the trainer's
    loggers: none under ``fast_dev_run``, which logs nothing)."""
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            logger.log_hyperparams(params)


def mlflow_settings(node: Any, name: str, run_dir: str | Path) -> dict[str, Any]:
    """Run name, tags and, with a SQLite store, where the artifacts go."""
    uri = node.get("tracking_uri")
    if not uri:
        raise ConfigError(f"logger.{name}.tracking_uri is empty: give sqlite:///FILE.db or a "
                          "server's http://HOST:PORT")
    tags = OmegaConf.to_container(node.tags) if node.get("tags") else {}
    settings = {"run_name": node.get("run_name") or run_name(run_dir),
                "tags": {"run_dir": str(Path(run_dir).resolve()), **tags}}
    if uri.startswith(SQLITE) and not node.get("artifact_location"):
        db = Path(uri.removeprefix(SQLITE)).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        # MLflow's own default is ./mlartifacts in the working directory: keep them together
        folder = db.parent / "mlartifacts" / str(node.get("experiment_name"))
        settings["artifact_location"] = folder.as_uri()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the store's schema steps
    return settings


def figure_dirs(trainer: L.Trainer) -> list[Path]:
    """Where dlexp's figure callbacks wrote (``figures/`` by default)."""
    dirs = {Path(cb.out_dir) for cb in trainer.callbacks
            if isinstance(cb, EvaluationFigures | TrainingCurves) and cb.out_dir}
    return sorted(d for d in dirs if d.is_dir())


def log_run_files(trainer: L.Trainer, results: dict[str, Any]) -> None:
    """At the run's end, into MLflow: the figures as artifacts under ``figures/``, and the
    kept checkpoint's path as the tag ``best_ckpt``; with ``log_model``, that checkpoint too,
    under ``checkpoints/`` (Lightning's own copies those of one checkpoint callback only:
    dlexp's ``last.ckpt``)."""
    if not trainer.is_global_zero:
        return
    best = results.get("best_ckpt")
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            client, run_id = logger.experiment, logger.run_id
            for folder in figure_dirs(trainer):
                client.log_artifacts(run_id, str(folder), "figures")
            if best:
                client.set_tag(run_id, "best_ckpt", str(Path(best).resolve()))
                if logger._log_model:
                    client.log_artifact(run_id, best, "checkpoints")


@contextlib.contextmanager
def finishing(loggers: list[Logger]) -> Iterator[None]:
    """End the runs when the job ends, however it ends. W&B keeps a process's run open until
    told, and a new ``WandbLogger`` would log into it: finished, each job of a sweep has its
    own. MLflow: ``FINISHED``, ``FAILED``, or ``KILLED`` (SIGTERM, Ctrl+C), also when the
    run stops before Lightning's own end of it."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        for logger in loggers:
            if isinstance(logger, MLFlowLogger) and logger._initialized:
                logger.finalize(status)
            run = getattr(logger, "_experiment", None) if isinstance(logger, WandbLogger) else None
            if run is not None:
                run.finish(exit_code=0 if status == "FINISHED" else 1)
