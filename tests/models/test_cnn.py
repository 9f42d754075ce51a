"""The CNN: the course network, conv block options, channels_last, init and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlexp.models.cnn import CNN, ConvBlock

SMALL = ({"filters": 4}, {"filters": 8})


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def _forward_backward(net: nn.Module, batch: int = 3, shape=(1, 28, 28)) -> torch.Tensor:
    x = torch.randn(batch, *shape, requires_grad=True)
    out = net(x)
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    return out


def test_default_is_the_course_network() -> None:
    net = CNN()
    convs = _convs(net)
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert [c.in_channels for c in convs] == [1, 32, 64]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 3
    dense = [m for m in net.classifier if isinstance(m, nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(128 * 3 * 3, 200)]
    assert (net.head.in_features, net.head.out_features) == (200, 10)
    assert net.features(torch.zeros(2, 1, 28, 28)).shape == (2, 128 * 3 * 3)
    assert _forward_backward(net).shape == (3, 10)


def test_course_parameter_count() -> None:
    expected = (1 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 9 * 128 + 128) \
        + (1152 * 200 + 200) + (200 * 10 + 10)
    assert sum(p.numel() for p in CNN().parameters()) == expected


@pytest.mark.parametrize(("padding", "width"), [("same", 128 * 3 * 3), ("valid", 128 * 1 * 1)])
def test_padding_changes_the_flattened_width(padding: str, width: int) -> None:
    blocks = [{"filters": f, "padding": padding} for f in (32, 64, 128)]
    net = CNN(blocks=blocks)
    assert net.classifier[0].in_features == width
    assert all(c.padding == padding for c in _convs(net))
    assert _forward_backward(net).shape == (3, 10)


@pytest.mark.parametrize(
    ("pool", "cls", "side"), [("max", nn.MaxPool2d, 7), ("avg", nn.AvgPool2d, 7), ("none", None, 28)]
)
def test_pooling(pool: str, cls: type | None, side: int) -> None:
    net = CNN(blocks=[{"filters": 4, "pool": pool}, {"filters": 8, "pool": pool}], dense=(16,))
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d | nn.AvgPool2d)]
    if cls is None:
        assert pools == []
    else:
        assert len(pools) == 2 and all(type(p) is cls for p in pools)
    assert net.classifier[0].in_features == 8 * side * side
    assert _forward_backward(net).shape == (3, 10)


def test_avg_and_max_pool_differ() -> None:
    torch.manual_seed(0)
    a = CNN(blocks=[{"filters": 4, "pool": "max"}], dense=())
    torch.manual_seed(0)
    b = CNN(blocks=[{"filters": 4, "pool": "avg"}], dense=())
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(a(x), b(x))


def test_batchnorm_replaces_the_conv_bias() -> None:
    net = CNN(blocks=[{"filters": 4, "batchnorm": True}, {"filters": 8, "batchnorm": True}])
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [b.num_features for b in bns] == [4, 8]
    assert all(c.bias is None for c in _convs(net))
    block = list(net.features[0])
    assert [type(m) for m in block[:3]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert _forward_backward(net).shape == (3, 10)


def test_pool_first_pools_before_batchnorm_and_activation() -> None:
    """Same function as the default order for max pooling, ReLU and a batchnorm with positive
    scale (eval mode), on a quarter of the positions."""
    spec = {"filters": 4, "batchnorm": True, "dropout": 0.25}
    late = ConvBlock(**spec).build(1, "relu")
    early = ConvBlock(**spec, pool_first=True).build(1, "relu")
    assert [type(m) for m in late] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d,
                                       nn.Dropout2d]
    assert [type(m) for m in early] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU,
                                        nn.Dropout2d]
    torch.manual_seed(0)
    bn = late[1]
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.normal_()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    early[0].load_state_dict(late[0].state_dict())
    early[2].load_state_dict(bn.state_dict())
    late.eval()
    early.eval()
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(early(x), late(x))
    net = CNN(blocks=[{**spec, "pool_first": True}, {"filters": 8, "pool_first": True}])
    assert net.features(x).shape == CNN(blocks=[spec, {"filters": 8}]).features(x).shape
    assert _forward_backward(net).shape == (3, 10)


def test_building_leaves_batchnorm_statistics_untouched() -> None:
    """The width-inference pass must not count as a training batch."""
    net = CNN(blocks=[{"filters": 4, "batchnorm": True}])
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 0
    torch.testing.assert_close(bn.running_var, torch.ones(4))
    torch.testing.assert_close(bn.running_mean, torch.zeros(4))
    assert net.training and bn.training  # built in train mode, like any nn.Module


def test_conv_block_dropout_drops_channels_or_single_activations() -> None:
    spatial = CNN(blocks=[{"filters": 8, "dropout": 0.5, "pool": "none"}], dense=())
    single = CNN(blocks=[{"filters": 8, "dropout": 0.5, "pool": "none",
                          "spatial_dropout": False}], dense=())
    torch.manual_seed(0)
    x = torch.ones(1, 8, 6, 6)
    per_channel = spatial.features[0][-1](x)  # whole channels are zero, or all kept
    assert all(len(c.unique()) == 1 for c in per_channel[0])
    assert type(single.features[0][-1]) is nn.Dropout
    per_value = single.features[0][-1](x)
    assert any(len(c.unique()) == 2 for c in per_value[0])  # zeros inside kept channels


def test_conv_block_dropout_and_dense_dropout() -> None:
    net = CNN(blocks=[{"filters": 4, "dropout": 0.25}, {"filters": 8}], dense=(16, 8), dropout=0.5)
    d2 = [m for m in net.modules() if isinstance(m, nn.Dropout2d)]
    d1 = [m for m in net.classifier if type(m) is nn.Dropout]
    assert [d.p for d in d2] == [0.25]
    assert [d.p for d in d1] == [0.5, 0.5]
    torch.manual_seed(0)
    x = torch.randn(2, 1, 28, 28)
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def test_stride_with_valid_padding() -> None:
    net = CNN(blocks=[{"filters": 4, "stride": 2, "padding": "valid", "pool": "none"}], dense=())
    assert net.head.in_features == 4 * 13 * 13
    assert _forward_backward(net).shape == (3, 10)


def test_no_dense_layers_and_other_input_shapes() -> None:
    net = CNN(in_shape=(3, 32, 32), num_classes=5, blocks=SMALL, dense=())
    assert len(net.classifier) == 0
    assert net.head.in_features == 8 * 8 * 8
    assert _forward_backward(net, shape=(3, 32, 32)).shape == (3, 5)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "softsign", "relu", "leaky_relu", "softplus"])
def test_every_conv_activation(act: str) -> None:
    net = CNN(blocks=SMALL, dense=(16,), activation=act)
    acts = [m for m in net.modules() if type(m).__name__.lower().replace("_", "")
            == act.replace("_", "")]
    assert len(acts) == 3  # two conv blocks and one dense layer
    assert _forward_backward(net).shape == (3, 10)


def test_channels_last_weights_and_output() -> None:
    net = CNN(blocks=SMALL, dense=(16,))
    assert net.channels_last
    for c in _convs(net):
        assert c.weight.is_contiguous(memory_format=torch.channels_last)
        if c.in_channels > 1:  # with one input channel both layouts coincide
            assert not c.weight.is_contiguous()
    torch.manual_seed(0)
    ref = CNN(blocks=SMALL, dense=(16,), channels_last=False)
    assert all(c.weight.is_contiguous() for c in _convs(ref))
    ref.load_state_dict(net.state_dict())
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(net(x), ref(x), rtol=1e-4, atol=1e-5)
    assert _forward_backward(net).shape == (3, 10)


@pytest.mark.parametrize("init", ["kaiming", "xavier"])
def test_init_changes_weights_and_zeroes_biases(init: str) -> None:
    torch.manual_seed(0)
    ref = CNN(blocks=SMALL, dense=(16,))
    torch.manual_seed(0)
    net = CNN(blocks=SMALL, dense=(16,), init=init)
    for (name, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        else:
            assert not torch.equal(p, q), name


def test_default_init_is_pytorch_default() -> None:
    torch.manual_seed(0)
    a = CNN(blocks=SMALL, dense=(16,))
    torch.manual_seed(0)
    b = CNN(blocks=SMALL, dense=(16,), init="default")
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.count_nonzero(a.head.bias) > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "maxout"}, "maxout is a dense layer"),
        ({"activation": "elu"}, "unknown activation 'elu'"),
        ({"init": "lecun"}, "unknown init 'lecun'"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": -0.5}, r"dropout must be in \[0, 1\)"),
        ({"blocks": [{"filters": 4, "padding": "full"}]}, "padding must be 'same' or 'valid'"),
        ({"blocks": [{"filters": 4, "pool": "min"}]}, "pool must be 'max', 'avg' or 'none'"),
        ({"blocks": [{"filters": 4, "stride": 2}]}, "padding='same' needs stride 1"),
        ({"blocks": [{"filters": 4, "dropout": 1.0}]}, r"block dropout must be in \[0, 1\)"),
        ({"blocks": [{"filters": 4, "dropout": -0.1}]}, r"block dropout must be in \[0, 1\)"),
        ({"in_shape": (8,)}, r"takes images \(channels, height, width\), got inputs of shape "
                             r"\(8,\): feature vectors go to model=mlp"),
        ({"in_shape": (1, 3, 3)}, "images of 3x3 are too small for 2 conv blocks"),
    ],
)
def test_invalid_settings_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CNN(**{"blocks": SMALL, **kwargs})


def test_conv_block_unknown_key_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        CNN(blocks=[{"filters": 4, "kernal": 3}])


def test_conv_block_build_order() -> None:
    seq = ConvBlock(filters=6, pool="avg", batchnorm=True, dropout=0.1).build(3, "tanh")
    assert [type(m) for m in seq] == [nn.Conv2d, nn.BatchNorm2d, nn.Tanh, nn.AvgPool2d,
                                      nn.Dropout2d]
    assert seq[0].in_channels == 3 and seq[0].out_channels == 6
