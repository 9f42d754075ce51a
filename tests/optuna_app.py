"""A tiny Hydra app for the Optuna sweeper's tests: an objective of a few parameters that
starts in a second (no torch), fails, returns NaN or two values when told to.

``python tests/optuna_app.py -m hydra/sweeper=optuna 'x=interval(0,1)' ...``"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

ConfigStore.instance().store(name="objective", node={
    "x": 0.0,
    "y": 0,
    "opt": "a",
    "fail_above": None,  # a job whose x is above this raises
    "nan_above": None,   # a job whose x is above this returns NaN
    "two": False,        # return two values (for two directions)
    "barrier": None,     # a folder: each job waits there until `workers` processes have come
    "workers": 1,
    "sleep": 0.0,
    "metrics": False,    # write metrics.json {"loss": ..., "x": ...} in the job's directory
})


def wait_for_workers(folder: Path, workers: int, timeout_s: float = 90.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while len(list(folder.iterdir())) < workers and time.monotonic() < deadline:
        time.sleep(0.05)


@hydra.main(version_base="1.3", config_path=None, config_name="objective")
def main(cfg: DictConfig) -> float | list[float]:
    if cfg.barrier:
        wait_for_workers(Path(cfg.barrier), cfg.workers)
    time.sleep(cfg.sleep)
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x:.3f} is too large")
    if cfg.nan_above is not None and cfg.x > cfg.nan_above:
        return float("nan")
    value = (cfg.x - 0.3) ** 2 + 0.01 * cfg.y + (0.0 if cfg.opt == "a" else 0.1)
    if cfg.metrics:
        out = Path(HydraConfig.get().runtime.output_dir) / "metrics.json"
        out.write_text(json.dumps({"loss": value, "x": float(cfg.x), "status": "ok"}))
    return [value, float(cfg.x)] if cfg.two else value


if __name__ == "__main__":
    main()
