"""The ``scheduler`` group. Each factory takes the optimizer and the training horizon, so
configs never hard-code step counts that depend on the data size."""

from __future__ import annotations

from dataclasses import dataclass

from torch.optim import Optimizer, lr_scheduler


@dataclass(frozen=True)
class Horizon:
    total_steps: int
    max_epochs: int


class _InverseTimeDecay:
    """Keras' ``lr / (1 + decay * t)`` with t the optimizer step (a class, so it pickles)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, step: int) -> float:
        return 1.0 / (1.0 + self.decay * step)


def step(optimizer: Optimizer, horizon: Horizon, step_size: int = 5, gamma: float = 0.5):
    if not isinstance(step_size, int) or step_size < 1:  # StepLR would fail only mid-training
        raise ValueError(f"scheduler.builder.step_size must be a whole number of epochs >= 1, "
                         f"got {step_size}")
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


def exponential(optimizer: Optimizer, horizon: Horizon, gamma: float = 0.999):
    return lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


def time_decay(optimizer: Optimizer, horizon: Horizon, decay: float = 1e-4):
    return lr_scheduler.LambdaLR(optimizer, _InverseTimeDecay(decay))


def cosine(optimizer: Optimizer, horizon: Horizon, eta_min: float = 0.0):
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(horizon.max_epochs, 1),
                                          eta_min=eta_min)


def onecycle(optimizer: Optimizer, horizon: Horizon, max_lr: float = 0.01,
             pct_start: float = 0.25):
    if not 0 < pct_start < 1:  # torch accepts 0 and 1, then divides by zero mid-run
        raise ValueError(f"scheduler.builder.pct_start must be in (0, 1), got {pct_start}")
    # parameter groups at their own lrs (transfer.lr_decay) keep their ratios to the first's
    first = optimizer.param_groups[0]["lr"]
    peaks = [max_lr * g["lr"] / first for g in optimizer.param_groups] if first else max_lr
    return lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=max(horizon.total_steps, 1),
                                   pct_start=pct_start)


def plateau(optimizer: Optimizer, horizon: Horizon, factor: float = 0.5, patience: int = 2,
            mode: str = "min"):
    return lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)
