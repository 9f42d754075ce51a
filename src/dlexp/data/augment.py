"""Augmentations on whole batches of images (N, C, H, W): no per-sample Python work."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, g: torch.Generator | None, max_shift: float = 0.1,
                  max_degrees: float = 10.0) -> torch.Tensor:
    """Random shift (fraction of the image size) and rotation for each image, in one
    ``grid_sample`` call over the batch."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * max_shift * 2  # grid spans [-1, 1]
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
