"""dlexp from Python and notebooks: ``dlexp.train(...)``, ``dlexp.sweep(...)`` and
``dlexp.fit(x, y)`` compose the config ``python train.py`` composes (the packaged ``conf/``,
Hydra's compose API), run the same :func:`dlexp.train.train` and return a :class:`Run`::

    import dlexp
    run = dlexp.train("experiment=mnist_cnn", "trainer.max_epochs=2")
    run.metrics["test/acc"], run.history["val_accuracy"], run.load().predict(x_test)

Each call starts from a clean state (Hydra's globals, torch's threads and matmul precision are
restored after it, and every run seeds itself), so cells can run in any order, twice.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from dlexp.inference import Predictor

# figures/curves.csv's columns as Keras' History.history names them
HISTORY = {"train/loss_epoch": "loss", "train/acc": "accuracy", "val/loss": "val_loss",
           "val/acc": "val_accuracy"}


class RunError(RuntimeError):
    """A run that could not start or did not finish; the message is the line the command line
    prints after ``error:``. ``metrics`` holds ``metrics.json`` when the run started."""

    def __init__(self, message: str, metrics: dict | None = None) -> None:
        super().__init__(message)
        self.metrics = metrics or {}


class Run:
    """One finished run: ``metrics`` (``metrics.json``), ``history`` (per-epoch curves, as
    Keras' ``History.history``), ``run_dir``, ``best_ckpt``, ``figures``, :meth:`load` and
    :meth:`show`."""

    def __init__(self, run_dir: str | Path, metrics: dict[str, Any],
                 overrides: Sequence[str] = ()) -> None:
        self.run_dir = Path(run_dir)
        self.metrics = metrics
        self.overrides = list(overrides)

    def __repr__(self) -> str:
        shown = {k: self.metrics.get(k) for k in ("status", "val/acc", "test/acc")}
        return f"Run({str(self.run_dir)!r}, {shown})"

    @property
    def best_ckpt(self) -> str | None:
        """The kept checkpoint (the best by ``monitor.metric``, else ``last.ckpt``)."""
        last = self.run_dir / "checkpoints" / "last.ckpt"
        return self.metrics.get("best_ckpt") or (str(last) if last.is_file() else None)

    @property
    def history(self) -> dict[str, list[float]]:
        """``{"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}``: one value per epoch
        (NaN where an epoch had no validation), from ``figures/curves.csv``."""
        path = self.run_dir / "figures" / "curves.csv"
        if not path.is_file():
            return {}
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        out: dict[str, list[float]] = {"epoch": [int(r["epoch"]) for r in rows]}
        for column, name in HISTORY.items():
            out[name] = [float(r[column]) if r.get(column) else float("nan") for r in rows]
        return out

    @property
    def figures(self) -> list[Path]:
        """The run's figures (curves, confusion matrix, ...), PNG files."""
        return sorted((self.run_dir / "figures").glob("*.png"))

    def load(self) -> Predictor:
        """The kept checkpoint for inference (:func:`dlexp.load`)."""
        if self.best_ckpt is None:
            raise RunError(f"{self.run_dir} has no checkpoint (fast_dev_run, or the "
                           "model_checkpoint callback removed)")
        from dlexp.inference import load

        return load(self.best_ckpt)

    def show(self) -> None:
        """The figures, inline in a notebook."""
        from IPython.display import Image, display

        for path in self.figures:
            display(Image(filename=str(path)))


class Runs(list):
    """The runs of a sweep, in grid order; :meth:`to_frame` compares them in a table."""

    def to_frame(self) -> Any:
        """A pandas DataFrame: each run's overrides and its main metrics."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Runs.to_frame() needs pandas: pip install pandas (or read each "
                              "run's metrics)") from None
        keys = ("status", "val/acc", "val/loss", "test/acc", "test/loss", "epoch", "wall_s")
        rows = [{**dict(o.split("=", 1) for o in run.overrides if "=" in o),
                 **{k: run.metrics.get(k) for k in keys}, "run_dir": str(run.run_dir)}
                for run in self]
        return pd.DataFrame(rows)


def as_overrides(overrides: Sequence[str], options: dict[str, Any]) -> list[str]:
    """``"model=mlp"`` strings plus keyword options: ``seed=1`` is ``seed=1`` and
    ``trainer__max_epochs=2`` is ``trainer.max_epochs=2`` (keywords cannot hold dots).
    ``config_dir="my_conf"`` is the CLI's ``--config-dir``: its groups (``my_conf/model/x.yaml``,
    ``my_conf/experiment/y.yaml``) join the packaged ones."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if v is None:
            return "null"
        if isinstance(v, list | tuple):
            return "[" + ",".join(value(i) for i in v) + "]"
        return str(v)

    for o in overrides:
        if not isinstance(o, str):
            raise TypeError(f"overrides are strings such as 'model=mlp', got {o!r}")
    options = dict(options)
    search = search_path(options.pop("config_dir", None))
    return [*search, *overrides,
            *(f"{k.replace('__', '.')}={value(v)}" for k, v in options.items())]


def search_path(config_dir: str | Path | None) -> list[str]:
    """The override that adds ``config_dir`` to Hydra's search path, checked to be a folder."""
    if config_dir is None:
        return []
    folder = Path(config_dir).expanduser().resolve()
    if not folder.is_dir():
        raise RunError(f"config_dir={config_dir} is not a folder; give the folder that holds "
                       "your config groups (model/, experiment/, ...)")
    return [f"hydra.searchpath=[file://{folder}]"]


@contextmanager
def isolated() -> Iterator[None]:
    """What a run changes for the whole process, put back after it: Hydra's globals, torch's
    threads and float32 matmul precision, and the environment (Lightning's seed variables)."""
    import torch
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    env = dict(os.environ)
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(precision)
        for key in set(os.environ) - set(env):
            del os.environ[key]
        os.environ.update(env)


def compose(overrides: Sequence[str], job: int | None = None) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, as ``python train.py`` composes it, its run
    directory made and Hydra's runtime set (``job``: the job number of a sweep). Hydra's own
    errors become one :class:`RunError` line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict, read_write
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("dlexp.conf", version_base="1.3"):
            cfg = hydra_compose("train", overrides=list(overrides), return_hydra_config=True)
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            if job is not None:
                cfg.hydra.mode = RunMode.MULTIRUN
                cfg.hydra.job.num = job
                out = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
            else:
                cfg.hydra.mode = RunMode.RUN
                out = Path(cfg.hydra.run.dir)
            cfg.hydra.runtime.output_dir = str(out.resolve())
            cfg.hydra.overrides.task = list(overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise RunError(" ".join(str(e).split())) from None
    finally:
        GlobalHydra.instance().clear()
    HydraConfig.instance().set_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / ".hydra").mkdir(exist_ok=True)
    job_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.save(job_cfg, out / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), out / ".hydra" / "overrides.yaml")
    return cfg


def run_config(cfg: DictConfig, overrides: Sequence[str], raise_on_error: bool = True) -> Run:
    """The CLI's run (:func:`dlexp.train.train`) of a composed config."""
    from dlexp.console import quiet_lightning_notices
    from dlexp.train import train as train_cfg

    quiet_lightning_notices()
    metrics = train_cfg(cfg)
    run = Run(cfg.paths.output_dir, metrics, overrides)
    if metrics["status"] != "ok" and raise_on_error:
        raise RunError(metrics.get("error") or metrics["status"], metrics)
    return run


def train(*overrides: str, multirun: bool = False, **options: Any) -> Run | Runs:
    """Train as ``python train.py OVERRIDES`` does and return the :class:`Run`; keyword
    ``options`` are more overrides (``trainer__max_epochs=2``). A bad setting raises
    :class:`RunError` with the CLI's ``error:`` line. ``multirun=True``: :func:`sweep`."""
    if multirun:
        return sweep(*overrides, **options)
    given = as_overrides(overrides, options)
    with isolated():
        return run_config(compose(given), given)


def grid(overrides: Sequence[str]) -> list[list[str]]:
    """Every job of a basic-launcher sweep: ``model=mlp,cnn optimizer=sgd,adam`` is 4 jobs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as e:
        raise RunError(" ".join(str(e).split())) from None
    values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
              if o.is_sweep_override() else [o.input_line] for o in parsed]
    return [list(job) for job in itertools.product(*values)]


def sweep(*overrides: str, **options: Any) -> Runs:
    """``python train.py -m OVERRIDES`` in this process (Hydra's basic launcher: one job after
    the other, in ``<sweep dir>/<job number>``): the :class:`Runs`, failed jobs included (their
    ``metrics["status"]`` says so), as a multirun goes on past a failed job."""
    jobs = grid(as_overrides(overrides, options))
    runs, sweep_dir = Runs(), None
    for number, job in enumerate(jobs):
        with isolated():
            cfg = compose([*job, *([f"hydra.sweep.dir={sweep_dir}"] if sweep_dir else [])],
                          job=number)
            sweep_dir = sweep_dir or str(Path(cfg.hydra.runtime.output_dir).parent)
            runs.append(run_config(cfg, job, raise_on_error=False))
    return runs


def fit(x: Any, y: Any, *overrides: str, model: str = "cnn", validation_data: Any = None,
        test_data: Any = None, epochs: int | None = None, batch_size: int | None = None,
        **options: Any) -> Run:
    """Train on in-memory arrays, as ``keras.Model.fit(x, y)``: images ``(N, H, W[, C])`` for
    ``model=cnn`` or ``mlp``, features ``(N, D)`` for ``model=mlp``; integer or string labels.
    ``validation_data``/``test_data``: ``(x, y)`` pairs, else stratified splits of ``x``
    (``data.val_size``, ``data.test_size``). The arrays are saved as ``<run>/arrays.npz`` and
    read by ``data=arrays``, so the run is like any other: its checkpoints work with
    ``dlexp-predict``, ``dlexp-eval``, ``dlexp-export`` and :func:`dlexp.load`."""
    import numpy as np
    from omegaconf import open_dict

    arrays = {"x_train": _numpy(x), "y_train": _numpy(y)}
    for part, pair in (("val", validation_data), ("test", test_data)):
        if pair is not None:
            arrays[f"x_{part}"], arrays[f"y_{part}"] = (_numpy(a) for a in pair)
    keras = {"trainer.max_epochs": epochs, "data.batch_size": batch_size}
    given = as_overrides([f"model={model}", "data=arrays", "data.path=arrays.npz", *overrides,
                          *(f"{k}={v}" for k, v in keras.items() if v is not None)], options)
    with isolated():
        cfg = compose(given)
        path = Path(cfg.paths.output_dir) / "arrays.npz"
        np.savez(path, **arrays)
        with open_dict(cfg):
            cfg.data.path = str(path)
        return run_config(cfg, given)


def _numpy(a: Any) -> Any:
    """NumPy arrays as they are; tensors (any device) and lists as NumPy arrays."""
    import numpy as np

    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)
