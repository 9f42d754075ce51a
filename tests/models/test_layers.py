"""Shared building blocks: activations, Maxout, dropout checks and weight init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlexp.models.layers import (
    ACTIVATIONS,
    LEAKY_SLOPE,
    Maxout,
    activation,
    check_dropout,
    dense,
    init_weights,
)


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("softsign", nn.Softsign), ("relu", nn.ReLU),
     ("leaky_relu", nn.LeakyReLU), ("softplus", nn.Softplus)],
)
def test_activation_by_keras_name(name: str, cls: type) -> None:
    assert isinstance(activation(name), cls)


def test_leaky_relu_slope() -> None:
    act = activation("leaky_relu")
    assert act.negative_slope == pytest.approx(LEAKY_SLOPE)
    assert act(torch.tensor([-100.0])).item() == pytest.approx(-100.0 * LEAKY_SLOPE)


def test_leaky_slope_reaches_every_layer_and_the_init() -> None:
    from dlexp.models.cnn import CNN
    from dlexp.models.mlp import MLP

    for net in (MLP(hidden=(8, 8), activation="leaky_relu", leaky_slope=0.3),
                CNN(blocks=[{"filters": 4}], dense=(8,), activation="leaky_relu",
                    leaky_slope=0.3)):
        slopes = {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)}
        assert slopes == {0.3}
    with pytest.raises(ValueError, match=r"leaky_slope must be in \[0, 1\), got 1.5"):
        MLP(activation="leaky_relu", leaky_slope=1.5)


@pytest.mark.parametrize("name", ["gelu", "Relu", "", "maxout"])
def test_unknown_activation_raises_with_choices(name: str) -> None:
    # maxout owns weights: it is built by dense(), never as a bare activation
    with pytest.raises(ValueError, match="unknown activation") as err:
        activation(name)
    assert "sigmoid" in str(err.value) and "maxout" in str(err.value)


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.999])
def test_check_dropout_accepts(p: float) -> None:
    assert check_dropout(p) == p


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, -1.0])
def test_check_dropout_rejects(p: float) -> None:
    with pytest.raises(ValueError, match=r"block dropout must be in \[0, 1\)"):
        check_dropout(p, "block dropout")


class TestMaxout:
    def test_shape_and_parameter_count(self) -> None:
        m = Maxout(20, 7, pieces=3)
        assert m.linear.weight.shape == (21, 20)
        assert sum(p.numel() for p in m.parameters()) == 20 * 7 * 3 + 7 * 3
        x = torch.randn(5, 20)
        assert m(x).shape == (5, 7)
        assert m(torch.randn(2, 4, 20)).shape == (2, 4, 7)  # leading dims kept

    def test_output_is_max_over_pieces(self) -> None:
        torch.manual_seed(0)
        m = Maxout(6, 4, pieces=3)
        x = torch.randn(8, 6)
        z = m.linear(x)  # unit j owns columns j*pieces ... j*pieces + pieces - 1
        expected = torch.stack([z[:, 3 * j: 3 * j + 3].max(dim=1).values for j in range(4)], 1)
        torch.testing.assert_close(m(x), expected)

    def test_hand_set_weights(self) -> None:
        m = Maxout(1, 1, pieces=2)
        with torch.no_grad():
            m.linear.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            m.linear.bias.zero_()
        x = torch.tensor([[-3.0], [2.0], [0.5]])
        torch.testing.assert_close(m(x), x.abs())  # max(x, -x) = |x|

    def test_backward_reaches_weights(self) -> None:
        m = Maxout(10, 5, pieces=2)
        m(torch.randn(3, 10)).sum().backward()
        assert m.linear.weight.grad is not None and m.linear.weight.grad.abs().sum() > 0

    @pytest.mark.parametrize("pieces", [0, 1])
    def test_needs_two_pieces(self, pieces: int) -> None:
        with pytest.raises(ValueError, match="pieces >= 2"):
            Maxout(4, 4, pieces)


@pytest.mark.parametrize("act", [a for a in ACTIVATIONS if a != "maxout"])
def test_dense_is_linear_then_activation(act: str) -> None:
    layers = dense(8, 3, act)
    assert len(layers) == 2
    assert isinstance(layers[0], nn.Linear) and layers[0].out_features == 3
    assert type(layers[1]) is type(activation(act))


def test_dense_maxout_fuses_the_linear_layer() -> None:
    (layer,) = dense(8, 3, "maxout", maxout_pieces=4)
    assert isinstance(layer, Maxout) and layer.pieces == 4 and layer.out_features == 3


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Conv2d(3, 8, 3), nn.Linear(300, 5))


def test_default_init_keeps_pytorch_weights() -> None:
    net, ref = _net(), _net()
    init_weights(net, "default")
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scheme", ["kaiming", "xavier"])
def test_init_changes_weights_and_zeroes_biases(scheme: str) -> None:
    net, ref = _net(), _net()
    init_weights(net, scheme)
    for (name, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
            assert torch.count_nonzero(q) > 0  # PyTorch's default biases are not zero
        else:
            assert not torch.equal(p, q), name


def test_kaiming_std_matches_fan_in() -> None:
    lin = nn.Linear(1000, 500)
    init_weights(lin, "kaiming", "relu")
    assert lin.weight.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.03)


@pytest.mark.parametrize(("act", "a", "nonlinearity"),
                         [("leaky_relu", LEAKY_SLOPE, "leaky_relu"), ("relu", 0.0, "relu"),
                          ("tanh", 0.0, "relu")])
def test_kaiming_gain_follows_the_activation(monkeypatch: pytest.MonkeyPatch, act: str, a: float,
                                             nonlinearity: str) -> None:
    calls: list[dict] = []
    real = nn.init.kaiming_normal_

    def spy(tensor: torch.Tensor, **kwargs: object) -> torch.Tensor:
        calls.append(kwargs)
        return real(tensor, **kwargs)

    monkeypatch.setattr(nn.init, "kaiming_normal_", spy)
    init_weights(nn.Sequential(nn.Linear(4, 4), nn.Conv2d(1, 2, 3)), "kaiming", act)
    assert len(calls) == 2
    assert all(c["a"] == a and c["nonlinearity"] == nonlinearity for c in calls)
    calls.clear()
    init_weights(nn.Linear(4, 4), "kaiming", act, slope=0.3)  # a configured slope
    assert calls[0]["a"] == (0.3 if act == "leaky_relu" else 0.0)


def test_xavier_is_uniform_within_glorot_bound() -> None:
    lin = nn.Linear(600, 400)
    init_weights(lin, "xavier")
    bound = math.sqrt(6 / (600 + 400))
    assert lin.weight.abs().max().item() <= bound
    assert lin.weight.abs().max().item() > 0.95 * bound
    assert lin.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)


@pytest.mark.parametrize("scheme", ["he", "glorot", "Kaiming", ""])
def test_unknown_init_raises(scheme: str) -> None:
    with pytest.raises(ValueError, match="unknown init") as err:
        init_weights(_net(), scheme)
    assert "kaiming" in str(err.value) and "xavier" in str(err.value)
