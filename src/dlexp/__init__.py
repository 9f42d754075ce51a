"""dlexp: Keras-course experiments on Lightning + Hydra."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

try:
    __version__ = version("dlexp")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "unknown"

if TYPE_CHECKING:
    from dlexp.api import Run, Runs
    from dlexp.inference import Predictor


def load(path: str | Path) -> Predictor:
    """A trained checkpoint ready for inference: ``dlexp.load(ckpt).predict_images([...])`` or
    ``.predict_texts([...])`` give class probabilities, with the input pipeline of training.
    See :mod:`dlexp.inference`. (Imported on first use: ``import dlexp`` stays cheap.)"""
    from dlexp.inference import load as _load

    return _load(path)


def train(*overrides: str, multirun: bool = False, **options: object) -> Run | Runs:
    """``python train.py OVERRIDES`` from Python: the same config, checks and run, returned as
    a :class:`dlexp.api.Run` (metrics, history, checkpoints, figures). See :mod:`dlexp.api`."""
    from dlexp.api import train as _train

    return _train(*overrides, multirun=multirun, **options)


def sweep(*overrides: str, **options: object) -> Runs:
    """``python train.py -m OVERRIDES`` in this process: a list of runs (``.to_frame()``)."""
    from dlexp.api import sweep as _sweep

    return _sweep(*overrides, **options)


def fit(x: object, y: object, *overrides: str, **options: object) -> Run:
    """Train on in-memory arrays, as ``keras.Model.fit(x, y)``: see :func:`dlexp.api.fit`."""
    from dlexp.api import fit as _fit

    return _fit(x, y, *overrides, **options)
