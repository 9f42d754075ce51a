"""L1/L2 weight penalties over kernels, never biases or norm parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlexp.models.mlp import MLP
from dlexp.regularization import WeightPenalty


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))


def _by_hand(net: nn.Module, l1: float, l2: float) -> torch.Tensor:
    conv, lin = net[0].weight, net[3].weight
    return l1 * (conv.abs().sum() + lin.abs().sum()) + l2 * (conv.pow(2).sum() + lin.pow(2).sum())


@pytest.mark.parametrize(("l1", "l2"), [(0.01, 0.0), (0.0, 0.001), (0.003, 0.02)])
def test_penalty_matches_hand_computation(l1: float, l2: float) -> None:
    net = _net()
    torch.testing.assert_close(WeightPenalty(l1, l2)(net), _by_hand(net, l1, l2))


def test_biases_and_norm_parameters_are_excluded() -> None:
    net = _net()
    before = WeightPenalty(0.1, 0.1)(net)
    with torch.no_grad():
        net[0].bias.fill_(100.0)
        net[1].weight.fill_(100.0)
        net[1].bias.fill_(100.0)
        net[3].bias.fill_(100.0)
    torch.testing.assert_close(WeightPenalty(0.1, 0.1)(net), before)
    with torch.no_grad():
        net[3].weight.add_(1.0)
    assert WeightPenalty(0.1, 0.1)(net) > before


def test_frozen_weights_are_excluded() -> None:
    net = _net()
    net[0].weight.requires_grad_(False)
    lin = net[3].weight
    torch.testing.assert_close(WeightPenalty(0.0, 1.0)(net), lin.pow(2).sum())


def test_gradient_is_the_penalty_derivative() -> None:
    net = _net()
    WeightPenalty(0.0, 0.5)(net).backward()
    torch.testing.assert_close(net[3].weight.grad, net[3].weight.detach())  # d(0.5 w^2) = w
    assert net[3].bias.grad is None
    net.zero_grad(set_to_none=True)
    WeightPenalty(0.2, 0.0)(net).backward()
    torch.testing.assert_close(net[0].weight.grad, 0.2 * net[0].weight.detach().sign())


def test_mlp_penalty_counts_every_layer() -> None:
    net = MLP(hidden=(16, 8), batchnorm=True)
    expected = sum(p.pow(2).sum() for n, p in net.named_parameters()
                   if n.endswith("weight") and p.ndim == 2)
    torch.testing.assert_close(WeightPenalty(l2=1.0)(net), expected)


def test_active() -> None:
    assert not WeightPenalty().active
    assert not WeightPenalty(0.0, 0.0).active
    assert WeightPenalty(l1=1e-5).active and WeightPenalty(l2=1e-5).active


def test_zero_penalty_and_no_weights() -> None:
    assert WeightPenalty()(_net()).item() == 0.0
    out = WeightPenalty(0.1, 0.1)(nn.BatchNorm1d(3))  # only 1-D parameters
    assert out.item() == 0.0 and out.shape == ()


@pytest.mark.parametrize(("l1", "l2"), [(-0.1, 0.0), (0.0, -1e-4)])
def test_negative_coefficients_raise(l1: float, l2: float) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        WeightPenalty(l1, l2)
