"""torchvision's ResNet-18 as a dlexp network: any channel count, optional small-image stem,
starting weights (torchvision's ImageNet ones or a state-dict file), and the ``features`` /
``head`` split that transfer learning uses."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

log = logging.getLogger(__name__)
IMAGENET = "imagenet"
STEM_KERNEL = 7  # torchvision's conv1: 64 x C x 7 x 7


class ResNet18(nn.Module):
    """ResNet-18 trunk -> global average pool -> linear head.

    ``small_input`` swaps the 7x7/2 stem and its max-pool for a 3x3/1 conv (the CIFAR recipe):
    on 28x28 digits the ImageNet stem leaves a 1x1 map after layer4. ``weights`` starts from
    torchvision's ImageNet weights (``"imagenet"``) or a torchvision ResNet-18 state dict saved
    in a file (``.pth``/``.pt``); the head is always new (``num_classes``). The stem's kernels
    are summed over the source's channels for 1-channel input (a grey image seen as equal R, G
    and B gives the same response); the small stem keeps them, cropped to 3x3. ``pretrained``
    is the old name of ``weights="imagenet"`` (checkpoints saved with it still rebuild).
    """

    modality = "image"

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 weights: str | None = None, small_input: bool = True,
                 pretrained: bool = False) -> None:
        super().__init__()
        weights = starting_weights(weights, pretrained)
        base = resnet18()
        kernels = None
        if weights is not None:
            state = load_weights(weights)
            kernels = state["conv1.weight"]
            base.load_state_dict({k: v for k, v in state.items() if not _new(k)}, strict=False)
        channels = int(in_shape[0])
        conv1 = _adapt_conv1(kernels, base.conv1.out_channels, channels, small_input)
        stem: list[nn.Module] = [conv1, base.bn1, base.relu]
        if not small_input:
            stem.append(base.maxpool)
        self.features = nn.Sequential(*stem, base.layer1, base.layer2, base.layer3, base.layer4,
                                      base.avgpool, nn.Flatten())
        self.head = nn.Linear(base.fc.in_features, num_classes)
        self.weights = weights
        self.pretrained = weights is not None  # transfer=finetune needs no source then

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @staticmethod
    def check_weights(weights: str | None = None, pretrained: bool = False) -> None:
        """Read (and for ``imagenet`` fetch) the starting weights before any data is read, so a
        missing file fails in a second; ValueError, one line, when they cannot be had."""
        spec = starting_weights(weights, pretrained)
        if spec is not None:
            load_weights(spec)
        if pretrained:
            log.warning("model.pretrained=true is deprecated: use model.weights=imagenet")


def starting_weights(weights: str | None, pretrained: bool = False) -> str | None:
    """``model.weights``, with the old ``model.pretrained=true`` read as ``imagenet``."""
    if pretrained and weights not in (None, IMAGENET):
        raise ValueError(f"model.pretrained=true (the old name of model.weights=imagenet) and "
                         f"model.weights={weights} disagree: drop model.pretrained")
    return IMAGENET if pretrained else weights


def load_weights(spec: str) -> dict[str, torch.Tensor]:
    """The ResNet-18 state dict ``model.weights`` names: torchvision's ImageNet weights
    (``imagenet``) or a file's, checked against torchvision's architecture."""
    state = _imagenet_state() if spec == IMAGENET else _file_state(Path(spec).expanduser())
    _check_architecture(state, spec)
    return state


def _imagenet_state() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights through its own loader: the hub cache, else the network
    (hash checked). Offline and uncached, one line instead of a socket traceback."""
    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as e:  # URLError, socket errors, hash mismatch, HTTP errors, bad cache
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise ValueError(f"model.weights=imagenet: torchvision's ResNet-18 weights could not be "
                         f"fetched ({type(e).__name__}: {e}); download {weights.url} into "
                         f"{cache}/ (TORCH_HOME moves it), or start from a file with "
                         f"model.weights=PATH.pth") from None


def _file_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``, plain or under ``state_dict``/``model``; read
    with ``weights_only=True`` (no pickled code runs)."""
    if not path.is_file():
        raise ValueError(f"model.weights={path}: no such file (give a ResNet-18 state dict "
                         f"saved with torch.save, or model.weights={IMAGENET})")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise ValueError(f"model.weights={path}: not a PyTorch file that safe (weights_only) "
                         "loading reads; save the network's state_dict() with torch.save") from None
    if isinstance(loaded, Mapping) and "dlexp" in loaded:
        raise ValueError(f"model.weights={path} is a dlexp checkpoint: start from it with "
                         f"transfer=finetune transfer.source={path}")
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not loaded or \
            not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"model.weights={path}: not a state dict (a mapping of names to "
                         "tensors); save the network's state_dict() with torch.save")
    return dict(loaded)


def _new(key: str) -> bool:
    """Tensors this network never takes from the source: the head (sized by the data's
    classes) and the stem's kernels (adapted to the channels by :func:`_adapt_conv1`)."""
    return key.startswith("fc.") or key == "conv1.weight"


def _check_architecture(state: Mapping[str, torch.Tensor], spec: str) -> None:
    """A torchvision ResNet-18's tensors: the same names and shapes, except the head's (any
    class count, or none) and the stem's input channels."""
    with torch.device("meta"):
        own = {k: tuple(v.shape) for k, v in resnet18().state_dict().items()}
    optional = [k for k in own if k.startswith("fc.") or k.endswith("num_batches_tracked")]
    missing = [k for k in own if k not in state and k not in optional]
    unexpected = [k for k in state if k not in own]
    bad = [f"{k} {tuple(state[k].shape)} vs {own[k]}" for k in own
           if k in state and not _new(k) and tuple(state[k].shape) != own[k]]
    stem = tuple(state["conv1.weight"].shape) if "conv1.weight" in state else None
    if stem is not None and (len(stem) != 4 or stem[0] != own["conv1.weight"][0]
                             or stem[2:] != (STEM_KERNEL, STEM_KERNEL)):
        bad.insert(0, f"conv1.weight {stem} vs (64, C, 7, 7)")
    if missing or unexpected or bad:
        problems = [f"{len(found)} {what} (e.g. {', '.join(found[:2])})" for what, found in
                    (("missing tensors", missing), ("unexpected tensors", unexpected),
                     ("shape mismatches", bad)) if found]
        raise ValueError(f"model.weights={spec} is not a torchvision ResNet-18 state dict: "
                         f"{'; '.join(problems)}")


def _adapt_conv1(kernels: torch.Tensor | None, out_channels: int, channels: int,
                 small_input: bool) -> nn.Conv2d:
    kernel, stride, padding = (3, 1, 1) if small_input else (7, 2, 3)
    new = nn.Conv2d(channels, out_channels, kernel, stride, padding, bias=False)
    if kernels is None:  # random weights: keep the fresh layer's own initialisation
        return new
    with torch.no_grad():
        w = kernels
        if small_input:  # the centre 3x3 of the 7x7 kernels
            w = w[:, :, 2:5, 2:5]
        if channels != w.shape[1]:  # grey from RGB: the sum; otherwise the mean, tiled
            w = w.sum(1, keepdim=True) if channels == 1 else \
                w.mean(1, keepdim=True).repeat(1, channels, 1, 1)
        new.weight.copy_(w)
    return new
