"""Convolutional network: a list of conv blocks, then a dense head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dlexp.models.layers import LEAKY_SLOPE, check_dropout, dense_block, init_weights
from dlexp.models.layers import activation as make_activation

COURSE_BLOCKS = ({"filters": 32}, {"filters": 64}, {"filters": 128})


@dataclass(frozen=True)
class ConvBlock:
    """One conv layer with its activation, optional batchnorm, pooling and dropout."""

    filters: int
    kernel: int = 3
    stride: int = 1
    padding: str = "same"  # Keras names: same | valid
    pool: str = "max"  # max | avg | none
    pool_size: int = 2
    batchnorm: bool = False
    dropout: float = 0.0
    spatial_dropout: bool = True  # whole channels (Keras' SpatialDropout2D); false: single
    # activations, as Keras' Dropout after a pooling layer
    pool_first: bool = False  # conv-pool-batchnorm-activation: with max pooling and ReLU the
    # same kind of function (all three are monotonic per channel), with pool_size**2 times less
    # batchnorm and activation work: most of a small CNN's step on a CPU

    def __post_init__(self) -> None:
        if self.padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {self.padding!r}")
        if self.pool not in ("max", "avg", "none"):
            raise ValueError(f"pool must be 'max', 'avg' or 'none', got {self.pool!r}")
        if self.padding == "same" and self.stride != 1:
            raise ValueError("padding='same' needs stride 1 (as in PyTorch); use padding='valid'")
        check_dropout(self.dropout, "block dropout")

    def build(self, in_channels: int, act: str, slope: float = LEAKY_SLOPE) -> nn.Sequential:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, self.filters, self.kernel, self.stride, self.padding,
                      bias=not self.batchnorm)
        ]
        if self.batchnorm:
            layers.append(nn.BatchNorm2d(self.filters))
        layers.append(make_activation(act, slope))
        if self.pool != "none":
            pool = nn.MaxPool2d if self.pool == "max" else nn.AvgPool2d
            layers.insert(1 if self.pool_first else len(layers), pool(self.pool_size))
        if self.dropout > 0:
            layers.append((nn.Dropout2d if self.spatial_dropout else nn.Dropout)(self.dropout))
        return nn.Sequential(*layers)


class CNN(nn.Module):
    """Conv blocks -> flatten -> dense layers -> linear head. Default: the course network
    conv32-pool-conv64-pool-conv128-pool-dense200-10. Runs in channels_last memory format."""

    modality = "image"

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        blocks: Sequence[Mapping] = COURSE_BLOCKS,
        dense: Sequence[int] = (200,),
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "default",
        channels_last: bool = True,
        leaky_slope: float = LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        if activation == "maxout":
            raise ValueError("maxout is a dense layer; use it in model=mlp, not in conv blocks")
        check_dropout(dropout)
        if len(in_shape) != 3:
            raise ValueError(f"model=cnn takes images (channels, height, width), got inputs of "
                             f"shape {tuple(in_shape)}: feature vectors go to model=mlp")
        specs = [ConvBlock(**dict(b)) for b in blocks]
        channels = in_shape[0]
        convs = []
        for spec in specs:
            convs.append(spec.build(channels, activation, leaky_slope))
            channels = spec.filters
        self.features = nn.Sequential(*convs, nn.Flatten())
        # infer the flattened width instead of asking the user; in eval mode, so the dummy
        # pass leaves BatchNorm running statistics untouched
        self.features.eval()
        with torch.no_grad():
            try:
                width = self.features(torch.zeros(1, *in_shape)).shape[1]
            except RuntimeError:
                raise ValueError(f"images of {in_shape[1]}x{in_shape[2]} are too small for "
                                 f"{len(specs)} conv blocks; use fewer blocks (model.blocks) "
                                 "or larger images") from None
        self.features.train()
        head: list[nn.Module] = []
        for size in dense:
            head += dense_block(width, size, activation, dropout, leaky_slope)
            width = size
        self.classifier = nn.Sequential(*head)
        self.head = nn.Linear(width, num_classes)
        self.channels_last = channels_last
        init_weights(self, init, activation, leaky_slope)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.classifier(self.features(x)))
