"""The ``regularization`` group: L1/L2 penalties added to the loss (Keras' kernel_regularizer).

Unlike an optimizer's decoupled ``weight_decay`` these are part of the objective, so they show
in ``train/loss`` and interact with the learning rate like any other loss term.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightPenalty(nn.Module):
    """``l1 * sum|w| + l2 * sum w^2`` over weight matrices and kernels (not biases or norms)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        super().__init__()
        if l1 < 0 or l2 < 0:
            raise ValueError(f"regularization coefficients must be >= 0, got l1={l1}, l2={l2}")
        self.l1, self.l2 = l1, l2

    @property
    def active(self) -> bool:
        return self.l1 > 0 or self.l2 > 0

    def forward(self, net: nn.Module) -> torch.Tensor:
        weights = [p for p in net.parameters() if p.requires_grad and p.ndim > 1]
        total = weights[0].new_zeros(()) if weights else torch.zeros(())
        for w in weights:
            if self.l1:
                total = total + self.l1 * w.abs().sum()
            if self.l2:
                total = total + self.l2 * w.pow(2).sum()
        return total
