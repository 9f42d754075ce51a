"""torchvision's ResNet-18 as a dlexp network: any channel count, optional small-image stem,
optional ImageNet weights, and the ``features`` / ``head`` split that transfer learning uses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18


class ResNet18(nn.Module):
    """ResNet-18 trunk -> global average pool -> linear head.

    ``small_input`` swaps the 7x7/2 stem and its max-pool for a 3x3/1 conv (the CIFAR recipe):
    on 28x28 digits the ImageNet stem leaves a 1x1 map after layer4. With ``pretrained`` the
    ImageNet kernels of conv1 are summed over RGB for 1-channel input (a grey image seen as
    equal R, G and B gives the same response); the small stem keeps them, cropped to 3x3.
    """

    modality = "image"

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 pretrained: bool = False, small_input: bool = True) -> None:
        super().__init__()
        base = resnet18()
        if pretrained:
            base.load_state_dict(_imagenet_state())
        channels = int(in_shape[0])
        conv1 = _adapt_conv1(base.conv1, channels, small_input, pretrained)
        stem: list[nn.Module] = [conv1, base.bn1, base.relu]
        if not small_input:
            stem.append(base.maxpool)
        self.features = nn.Sequential(*stem, base.layer1, base.layer2, base.layer3, base.layer4,
                                      base.avgpool, nn.Flatten())
        self.head = nn.Linear(base.fc.in_features, num_classes)
        self.pretrained = pretrained

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _imagenet_state() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights, from the hub cache or the network. Offline and uncached,
    a clear message instead of a socket traceback."""
    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # URLError, socket errors, hash mismatch, HTTP errors
        cache = f"{torch.hub.get_dir()}/checkpoints/"
        raise ValueError(f"model.pretrained=true needs torchvision's ImageNet weights "
                         f"({weights.url}), which could not be fetched ({type(e).__name__}: "
                         f"{e}); put the file in {cache}, or use model.pretrained=false"
                         ) from None


def _adapt_conv1(conv: nn.Conv2d, channels: int, small_input: bool, pretrained: bool
                 ) -> nn.Conv2d:
    kernel, stride, padding = (3, 1, 1) if small_input else (7, 2, 3)
    new = nn.Conv2d(channels, conv.out_channels, kernel, stride, padding, bias=False)
    if not pretrained:  # random weights: keep the fresh layer's own initialisation
        return new
    with torch.no_grad():
        w = conv.weight
        if small_input:  # the centre 3x3 of the 7x7 kernels
            w = w[:, :, 2:5, 2:5]
        if channels != w.shape[1]:  # grey from RGB: the sum; otherwise the mean, tiled
            w = w.sum(1, keepdim=True) if channels == 1 else \
                w.mean(1, keepdim=True).repeat(1, channels, 1, 1)
        new.weight.copy_(w)
    return new
