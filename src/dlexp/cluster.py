"""Sweeps, clusters and processes: which process and which job this is, DDP child processes
inside a Hydra multirun, resuming a job that SLURM requeued (preemption, time limit) from the
checkpoints it left in its own directory, and what a job returns to its sweeper."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, read_write

from dlexp.errors import ConfigError


def is_rank_zero() -> bool:
    """True in the main process, before and after Lightning sets up DDP."""
    return getattr(rank_zero_only, "rank", int(os.environ.get("LOCAL_RANK", 0))) == 0


def sweeping() -> bool:
    """A multirun job: its returned metric is what a sweeper compares."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def choices() -> dict[str, str]:
    """The option chosen in every config group (``model: cnn``, ...), when Hydra composed."""
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


class Terminated(SystemExit):
    """SIGTERM (a scheduler's preemption, ``kill``): the run stops where it is, records
    ``interrupted`` and the process exits with 128 + 15, as schedulers and scripts expect."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


@contextmanager
def sigterm_stops_the_run() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` wherever the run is, data loading included (by
    default it would kill the process before anything is recorded). Lightning's own handler,
    registered during fit, calls this one after its own."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def requeued_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint an earlier attempt of this SLURM job left, else None.

    A requeued job reruns in the same directory (submitit pickles the job's config). Lightning's
    SLURMEnvironment saves ``hpc_ckpt_N.ckpt`` there on the requeue signal; a job killed
    without it (plain SIGTERM preemption) still has ``checkpoints/last.ckpt`` from its last epoch.
    """
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) < 1:
        return None
    found = [p for p in [*run_dir.glob("hpc_ckpt_*.ckpt"), run_dir / "checkpoints" / "last.ckpt"]
             if p.is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


@contextmanager
def ddp_children_in_this_job(cfg: DictConfig) -> Iterator[None]:
    """Make Lightning's DDP subprocess launcher restart *this* multirun job on ranks 1..N-1.

    Lightning starts each child as ``python train.py <sys.argv[1:]> hydra.run.dir=<run.dir>``.
    In a multirun that argv holds ``-m`` and the whole sweep, and run.dir is not the job's
    directory, so every child would start its own sweep somewhere else. For the duration of
    the job, argv becomes this job's overrides in single-run mode and run.dir its directory.
    """
    if not sweeping():
        yield
        return
    hydra_cfg = HydraConfig.get()
    _check_launcher(cfg, hydra_cfg)
    saved_argv, saved_dir, saved_env = sys.argv, hydra_cfg.run.dir, dict(os.environ)
    sys.argv = [saved_argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = saved_dir
        _end_process_group(saved_env)


def _end_process_group(saved_env: dict[str, str]) -> None:
    """The next job of the sweep runs in this process: without this it would reuse the
    finished job's process group (its peers are gone) and MASTER_PORT/WORLD_SIZE."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in set(os.environ) - set(saved_env):
        del os.environ[key]
    os.environ.update(saved_env)


def _check_launcher(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """Joblib's worker processes are not ``train.py``: their DDP children could not rejoin."""
    spawns = str(cfg.trainer.get("strategy", "")).startswith("ddp") and _devices(cfg) > 1
    if spawns and "joblib" in str(hydra_cfg.launcher.get("_target_", "")):
        raise ConfigError("trainer=ddp inside hydra/launcher=joblib cannot start its processes; "
                          "use the default launcher or hydra/launcher=slurm")


def _devices(cfg: DictConfig) -> int:
    devices = cfg.trainer.get("devices", 1)
    if isinstance(devices, int):
        return devices
    return len(devices) if not isinstance(devices, str) else 2  # "auto", "-1": assume several


class TrialFailed(RuntimeError):
    """A failed job under the Optuna sweeper: raised instead of returning NaN, so the sweeper
    gets the job's error with it (marked FAIL, the study goes on up to ``max_failure_rate``, and
    the sweeper's last line names the first failure)."""


def sweep_value(value: float, error: str | None, status: str = "ok") -> float:
    """What the job returns to its sweeper: NaN marks a failure, except under Optuna, where a
    failure raises :class:`TrialFailed` and a pruned run ``optuna.TrialPruned``."""
    optuna = HydraConfig.initialized() and "optuna" in str(HydraConfig.get().sweeper._target_)
    if status == "pruned" and optuna:
        from optuna import TrialPruned

        raise TrialPruned(error or "pruned")
    if math.isnan(value) and optuna:
        raise TrialFailed(error or "the monitored metric is NaN")
    return value


def pruning_callbacks(cfg: DictConfig) -> list:
    """Under ``hydra.sweeper.pruner``: optuna-integration's pruning callback on this job's
    trial, reporting ``monitor.metric`` after each validation; nothing otherwise."""
    if not sweeping() or HydraConfig.get().sweeper.get("pruner") is None:
        return []
    from hydra_plugins.dlexp import optuna_sweeper

    if optuna_sweeper.job_trial() is None:
        return []
    try:
        return [optuna_sweeper.pruning_callback(HydraConfig.get().sweeper, cfg.monitor.metric)]
    except optuna_sweeper.SweepError as e:
        raise ConfigError(str(e)) from None


def raise_if_pruned(trainer: object) -> None:
    """Under DDP the pruning callback only stops the ranks; it raises here, after fit."""
    for callback in getattr(trainer, "callbacks", []):
        if type(callback).__name__ == "PyTorchLightningPruningCallback":
            callback.check_pruned()


def pruned(exc: BaseException) -> bool:
    """The pruning callback stopped the run (``optuna.TrialPruned``)."""
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(exc, optuna.TrialPruned)
