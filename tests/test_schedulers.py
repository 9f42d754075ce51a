"""Scheduler factories: each builds from (optimizer, horizon) and follows its formula."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.optim import lr_scheduler

from dlexp import schedulers
from dlexp.schedulers import Horizon

LR = 0.1


def _opt() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=LR)


def _run(sched, opt, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize(
    ("name", "cls"),
    [("step", lr_scheduler.StepLR), ("exponential", lr_scheduler.ExponentialLR),
     ("time_decay", lr_scheduler.LambdaLR), ("cosine", lr_scheduler.CosineAnnealingLR),
     ("onecycle", lr_scheduler.OneCycleLR), ("plateau", lr_scheduler.ReduceLROnPlateau)],
)
def test_every_factory_builds(name: str, cls: type) -> None:
    sched = getattr(schedulers, name)(_opt(), Horizon(total_steps=100, max_epochs=10))
    assert isinstance(sched, cls)


@pytest.mark.parametrize("decay", [1e-4, 0.01, 0.5])
def test_time_decay_formula(decay: float) -> None:
    opt = _opt()
    sched = schedulers.time_decay(opt, Horizon(100, 1), decay=decay)
    assert opt.param_groups[0]["lr"] == pytest.approx(LR)
    lrs = _run(sched, opt, 20)
    for t, lr in enumerate(lrs, start=1):
        assert lr == pytest.approx(LR / (1 + decay * t))


def test_time_decay_pickles() -> None:
    fn = pickle.loads(pickle.dumps(schedulers._InverseTimeDecay(0.5)))
    assert fn(2) == pytest.approx(0.5)
    sched = schedulers.time_decay(_opt(), Horizon(10, 1), decay=0.5)
    assert "lr_lambdas" in sched.state_dict()


def test_onecycle_uses_total_steps() -> None:
    opt = _opt()
    sched = schedulers.onecycle(opt, Horizon(total_steps=40, max_epochs=3), max_lr=1.0,
                                pct_start=0.25)
    assert sched.total_steps == 40
    lrs = _run(sched, opt, 39)
    peak = max(range(39), key=lambda i: lrs[i])
    assert lrs[peak] == pytest.approx(1.0, rel=1e-3) and peak == 8  # step 10 of 40 (0-based 9)
    assert lrs[-1] < 1e-3  # annealed to near zero at the end of the horizon
    with pytest.raises(ValueError):
        _run(sched, opt, 2)  # stepping past total_steps


def test_onecycle_zero_horizon_is_clamped() -> None:
    assert schedulers.onecycle(_opt(), Horizon(0, 1)).total_steps == 1


def test_cosine_uses_max_epochs() -> None:
    opt = _opt()
    sched = schedulers.cosine(opt, Horizon(total_steps=1000, max_epochs=8), eta_min=0.01)
    assert sched.T_max == 8
    lrs = _run(sched, opt, 8)
    assert lrs[3] == pytest.approx(0.01 + (LR - 0.01) / 2)  # half-way
    assert lrs[-1] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_cosine_zero_epochs_is_clamped() -> None:
    assert schedulers.cosine(_opt(), Horizon(10, 0)).T_max == 1


def test_step_halves_every_step_size() -> None:
    opt = _opt()
    lrs = _run(schedulers.step(opt, Horizon(10, 10), step_size=2, gamma=0.5), opt, 6)
    assert lrs == pytest.approx([LR, LR / 2, LR / 2, LR / 4, LR / 4, LR / 8])


def test_exponential() -> None:
    opt = _opt()
    lrs = _run(schedulers.exponential(opt, Horizon(10, 10), gamma=0.9), opt, 3)
    assert lrs == pytest.approx([LR * 0.9, LR * 0.81, LR * 0.729])


def test_plateau_reduces_after_patience() -> None:
    opt = _opt()
    sched = schedulers.plateau(opt, Horizon(10, 10), factor=0.5, patience=2)
    for _ in range(3):
        opt.step()
        sched.step(1.0)  # the first sets the best; two more are within patience
    assert opt.param_groups[0]["lr"] == pytest.approx(LR)
    sched.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(LR / 2)
