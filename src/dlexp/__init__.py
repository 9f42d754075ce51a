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
    from dlexp.inference import Predictor


def load(path: str | Path) -> Predictor:
    """A trained checkpoint ready for inference: ``dlexp.load(ckpt).predict_images([...])`` or
    ``.predict_texts([...])`` give class probabilities, with the input pipeline of training.
    See :mod:`dlexp.inference`. (Imported on first use: ``import dlexp`` stays cheap.)"""
    from dlexp.inference import load as _load

    return _load(path)
