"""Multi-layer perceptron: the course's 784-800-800-10 network and its variants."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dlexp.models.layers import LEAKY_SLOPE, check_dropout, dense, init_weights


class MLP(nn.Module):
    """Flatten -> (dropout) -> [dense -> (batchnorm) -> activation -> dropout] * N -> linear head
    (logits). ``input_dropout`` drops input pixels too, as the course's dropout lecture allows
    ("the input layer as well")."""

    modality = "image"

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        hidden: Sequence[int] = (800, 800),
        activation: str = "relu",
        dropout: float | Sequence[float] = 0.0,
        batchnorm: bool = False,
        maxout_pieces: int = 2,
        init: str = "default",
        input_dropout: float = 0.0,
        leaky_slope: float = LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        if any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be whole numbers >= 1, got {hidden}")
        drops = list(dropout) if isinstance(dropout, Sequence) else [dropout] * len(hidden)
        if len(drops) != len(hidden):
            raise ValueError(f"dropout has {len(drops)} values for {len(hidden)} hidden layers")
        for p in drops:
            check_dropout(p)
        layers: list[nn.Module] = [nn.Flatten()]
        if check_dropout(input_dropout, "input_dropout") > 0:
            layers.append(nn.Dropout(input_dropout))
        width = math.prod(in_shape)
        for size, p in zip(hidden, drops, strict=True):
            block = dense(width, size, activation, maxout_pieces, leaky_slope)
            if batchnorm:  # normalise pre-activation, as in Ioffe & Szegedy
                block.insert(1, nn.BatchNorm1d(size))
            layers += block
            if p > 0:
                layers.append(nn.Dropout(p))
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        init_weights(self, init, activation, leaky_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
