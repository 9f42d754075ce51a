"""dlexp.rng: the random-number states of torch, numpy and python survive a checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from dlexp import rng


def _draw() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(), random.gauss(0, 1)


def test_restored_states_draw_the_same_numbers(tmp_path: Path) -> None:
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    _draw()
    saved = tmp_path / "rng.pt"
    torch.save(rng.capture_all_ranks(), saved)
    expected = _draw()
    _draw()  # move every generator on
    [states] = torch.load(saved, weights_only=True)  # plain tensors and numbers only
    rng.restore(states)
    assert _draw() == expected
