"""ResNet-18 for small grey images: shapes, stems, the backbone/head split, ImageNet weights."""

from __future__ import annotations

from urllib.error import URLError

import pytest
import torch
from torchvision.models import ResNet18_Weights, resnet18

from dlexp.models.resnet import ResNet18


def test_grey_digits_in_logits_out() -> None:
    net = ResNet18(in_shape=(1, 28, 28), num_classes=7).eval()
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    assert net.features[0].in_channels == 1 and net.features[0].stride == (1, 1)
    big = ResNet18(in_shape=(3, 64, 64), small_input=False).eval()
    assert big(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    assert big.features[0].kernel_size == (7, 7)
    assert [n for n, _ in net.named_children()] == ["features", "head"]


def test_pretrained_sums_rgb_kernels_for_grey(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = resnet18().state_dict()
    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", lambda self, **kw: reference)
    net = ResNet18(pretrained=True, small_input=False)
    torch.testing.assert_close(net.features[0].weight,
                               reference["conv1.weight"].sum(1, keepdim=True))
    small = ResNet18(pretrained=True, small_input=True)
    torch.testing.assert_close(small.features[0].weight,
                               reference["conv1.weight"][:, :, 2:5, 2:5].sum(1, keepdim=True))
    torch.testing.assert_close(small.features[3][0].conv1.weight,
                               reference["layer1.0.conv1.weight"])


def test_pretrained_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(ValueError, match="could not be fetched .* model.pretrained=false"):
        ResNet18(pretrained=True)
