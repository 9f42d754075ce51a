"""The MLP: course architecture, every activation, dropout, batchnorm, maxout and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlexp.models.layers import ACTIVATIONS, Maxout
from dlexp.models.mlp import MLP


def _forward_backward(net: nn.Module, batch: int = 4, shape=(1, 28, 28)) -> torch.Tensor:
    x = torch.randn(batch, *shape, requires_grad=True)
    out = net(x)
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    return out


def test_default_is_the_course_network() -> None:
    net = MLP()
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 800), (800, 800),
                                                                    (800, 10)]
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == 784 * 800 + 800 + 800 * 800 + 800 + 800 * 10 + 10
    assert not any(isinstance(m, nn.Dropout | nn.BatchNorm1d) for m in net.modules())


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_forward_backward_every_activation(act: str) -> None:
    net = MLP(hidden=(32, 16), activation=act, num_classes=7)
    out = _forward_backward(net)
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


def test_in_shape_and_num_classes_follow_the_data() -> None:
    net = MLP(in_shape=(3, 8, 8), num_classes=4, hidden=(20,))
    assert net.features[1].in_features == 3 * 8 * 8
    assert _forward_backward(net, batch=2, shape=(3, 8, 8)).shape == (2, 4)


def test_no_hidden_layers_is_logistic_regression() -> None:
    net = MLP(hidden=(), dropout=0.3)
    assert isinstance(net.head, nn.Linear) and net.head.in_features == 784
    assert _forward_backward(net).shape == (4, 10)


def test_maxout_layers_own_k_pieces() -> None:
    net = MLP(hidden=(30, 20), activation="maxout", maxout_pieces=3)
    maxouts = [m for m in net.modules() if isinstance(m, Maxout)]
    assert len(maxouts) == 2 and all(m.pieces == 3 for m in maxouts)
    # no separate linear layer before each maxout: only the head remains a bare Linear
    assert [type(m) for m in net.features] == [nn.Flatten, Maxout, Maxout]
    expected = (784 * 30 * 3 + 30 * 3) + (30 * 20 * 3 + 20 * 3) + (20 * 10 + 10)
    assert sum(p.numel() for p in net.parameters()) == expected


def test_single_dropout_applies_to_every_hidden_layer() -> None:
    net = MLP(hidden=(16, 16, 16), dropout=0.25)
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.25, 0.25, 0.25]


def test_dropout_list_one_per_layer() -> None:
    net = MLP(hidden=(16, 8, 4), dropout=[0.1, 0.0, 0.5])
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.1, 0.5]  # p=0 adds no layer
    # each dropout follows its own layer's activation
    kinds = [type(m).__name__ for m in net.features]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear", "ReLU",
                     "Dropout"]


def test_input_dropout_comes_before_the_first_layer() -> None:
    net = MLP(hidden=(16,), dropout=0.0, input_dropout=0.2)
    assert [type(m).__name__ for m in net.features] == ["Flatten", "Dropout", "Linear", "ReLU"]
    assert net.features[1].p == 0.2
    x = torch.ones(4, 1, 28, 28)
    net.train()
    dropped = net.features[:2](x)
    assert (dropped == 0).any() and torch.allclose(dropped[dropped != 0], torch.tensor(1 / 0.8))


def test_dropout_is_active_in_train_and_off_in_eval() -> None:
    torch.manual_seed(0)
    net = MLP(hidden=(64,), dropout=0.5)
    x = torch.randn(8, 1, 28, 28)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_batchnorm_normalises_before_the_activation(act: str) -> None:
    net = MLP(hidden=(16, 8), activation=act, batchnorm=True)
    kinds = [type(m) for m in net.features]
    assert kinds[1:4] == [nn.Linear, nn.BatchNorm1d, type(net.features[3])]
    assert not isinstance(net.features[3], nn.BatchNorm1d | nn.Linear)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [b.num_features for b in bns] == [16, 8]
    assert _forward_backward(net).shape == (4, 10)


def test_batchnorm_with_maxout() -> None:
    net = MLP(hidden=(12,), activation="maxout", batchnorm=True)
    assert isinstance(net.features[2], nn.BatchNorm1d) and net.features[2].num_features == 12
    assert _forward_backward(net).shape == (4, 10)


@pytest.mark.parametrize("init", ["kaiming", "xavier"])
def test_init_schemes(init: str) -> None:
    torch.manual_seed(0)
    ref = MLP(hidden=(32,))
    torch.manual_seed(0)
    net = MLP(hidden=(32,), init=init)
    assert not torch.equal(net.features[1].weight, ref.features[1].weight)
    assert torch.count_nonzero(net.features[1].bias) == 0
    assert torch.count_nonzero(net.head.bias) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": -0.2}, r"dropout must be in \[0, 1\)"),
        ({"dropout": [0.1, 1.2]}, r"dropout must be in \[0, 1\)"),
        ({"dropout": [0.1]}, "dropout has 1 values for 2 hidden layers"),
        ({"dropout": [0.1, 0.1, 0.1]}, "dropout has 3 values for 2 hidden layers"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
        ({"init": "orthogonal"}, "unknown init 'orthogonal'"),
        ({"activation": "maxout", "maxout_pieces": 1}, "pieces >= 2"),
        ({"input_dropout": 1.0}, r"input_dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_invalid_settings_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MLP(hidden=(8, 8), **kwargs)
