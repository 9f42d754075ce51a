"""Building blocks shared by the networks: activations (Maxout included) and weight init."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = ("sigmoid", "tanh", "softsign", "relu", "leaky_relu", "softplus", "maxout")
INITS = ("default", "kaiming", "xavier")
LEAKY_SLOPE = 0.01  # PyTorch's default negative slope; Keras' LeakyReLU uses 0.3


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al. 2013): a linear layer with ``k`` pieces, max over pieces.

    Unlike the other activations it owns weights, so it replaces the preceding linear layer.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2) -> None:
        super().__init__()
        if pieces < 2:
            raise ValueError(f"maxout needs pieces >= 2, got {pieces}")
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x).view(*x.shape[:-1], self.out_features, self.pieces)
        return z.max(dim=-1).values


def check_dropout(p: float, where: str = "dropout") -> float:
    """Dropout must keep something: p in [0, 1)."""
    if not 0 <= p < 1:
        raise ValueError(f"{where} must be in [0, 1), got {p}")
    return p


def activation(name: str, slope: float = LEAKY_SLOPE) -> nn.Module:
    """An activation module by its Keras name (``maxout`` is built by :func:`dense`);
    ``slope`` is leaky_relu's negative slope."""
    if not 0 <= slope < 1:
        raise ValueError(f"leaky_slope must be in [0, 1), got {slope}")
    table = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "softsign": nn.Softsign,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(slope),
        "softplus": nn.Softplus,
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return table[name]()


def dense(in_features: int, out_features: int, act: str, maxout_pieces: int = 2,
          slope: float = LEAKY_SLOPE) -> list[nn.Module]:
    """A dense layer followed by its activation; Maxout fuses both into one layer."""
    if act == "maxout":
        return [Maxout(in_features, out_features, maxout_pieces)]
    return [nn.Linear(in_features, out_features), activation(act, slope)]


def dense_block(in_features: int, out_features: int, act: str, dropout: float = 0.0,
                slope: float = LEAKY_SLOPE) -> list[nn.Module]:
    """:func:`dense` plus dropout when ``dropout`` > 0: one hidden layer of a classifier head."""
    layers = dense(in_features, out_features, act, slope=slope)
    return layers + [nn.Dropout(dropout)] if dropout > 0 else layers


def init_weights(module: nn.Module, scheme: str, act: str = "relu",
                 slope: float = LEAKY_SLOPE) -> None:
    """Re-initialise conv and linear weights: ``default`` keeps PyTorch's, else kaiming/xavier."""
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    if scheme == "default":
        return
    nonlinearity = "leaky_relu" if act == "leaky_relu" else "relu"
    slope = slope if act == "leaky_relu" else 0.0
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity=nonlinearity)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
