"""ResNet-18 for small grey images: shapes, stems, the backbone/head split, and its starting
weights (model.weights): torchvision's ImageNet ones (cached, or offline) and state-dict files."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from conftest import compose_train
from torchvision.models import resnet18

from dlexp import config
from dlexp.builders import build_net
from dlexp.errors import ConfigError
from dlexp.models.resnet import ResNet18
from dlexp.train import fit_and_test

CACHED_NAME = "resnet18-f37072fd.pth"  # torchvision's file name for IMAGENET1K_V1


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return resnet18().state_dict()


@pytest.fixture
def saved(reference: dict, tmp_path: Path) -> Path:
    path = tmp_path / "resnet18.pth"
    torch.save(reference, path)
    return path


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty hub cache and no network: torch.hub's download raises as it would offline."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_network(url: str, *args, **kwargs) -> None:
        raise URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


def _check(model: list[str], tmp_path: Path) -> None:
    config.check_weights(compose_train(["model=resnet18", *model], tmp_path))


def test_grey_digits_in_logits_out() -> None:
    net = ResNet18(in_shape=(1, 28, 28), num_classes=7).eval()
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    assert net.features[0].in_channels == 1 and net.features[0].stride == (1, 1)
    big = ResNet18(in_shape=(3, 64, 64), small_input=False).eval()
    assert big(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    assert big.features[0].kernel_size == (7, 7)
    assert [n for n, _ in net.named_children()] == ["features", "head"]
    assert not net.pretrained


def test_a_state_dict_file_through_the_yaml_option(reference: dict, saved: Path,
                                                   tmp_path: Path) -> None:
    cfg = compose_train(["model=resnet18", f"model.weights={saved}", "model.small_input=false"],
                        tmp_path)
    config.check_weights(cfg)
    net = build_net(cfg.model, {"net_kwargs": {"in_shape": (3, 32, 32), "num_classes": 4}})
    torch.testing.assert_close(net.features[0].weight, reference["conv1.weight"])
    torch.testing.assert_close(net.features[1].running_var, reference["bn1.running_var"])
    torch.testing.assert_close(net.features[4][1].conv2.weight, reference["layer1.1.conv2.weight"])
    torch.testing.assert_close(net.features[7][0].downsample[0].weight,
                               reference["layer4.0.downsample.0.weight"])
    assert net.head.out_features == 4 and net.pretrained  # the head is new, for 4 classes
    again = build_net(cfg.model, {"net_kwargs": {"in_shape": (3, 32, 32), "num_classes": 4}},
                      load_pretrained=False)  # rebuilt from a checkpoint: its own weights
    assert not torch.equal(again.features[4][1].conv2.weight, reference["layer1.1.conv2.weight"])


def test_grey_input_sums_the_rgb_kernels(reference: dict, saved: Path) -> None:
    net = ResNet18(in_shape=(1, 28, 28), weights=str(saved), small_input=False)
    torch.testing.assert_close(net.features[0].weight,
                               reference["conv1.weight"].sum(1, keepdim=True))
    small = ResNet18(in_shape=(1, 28, 28), weights=str(saved), small_input=True)
    torch.testing.assert_close(small.features[0].weight,
                               reference["conv1.weight"][:, :, 2:5, 2:5].sum(1, keepdim=True))
    torch.testing.assert_close(small.features[3][0].conv1.weight,
                               reference["layer1.0.conv1.weight"])


@pytest.mark.parametrize("key", ["state_dict", "model"])
def test_a_nested_state_dict_and_another_head_are_taken(reference: dict, tmp_path: Path,
                                                        key: str) -> None:
    other = resnet18(num_classes=5).state_dict()  # someone's fine-tuned 5-class network
    path = tmp_path / "nested.pt"
    torch.save({key: other, "epoch": torch.tensor(3)}, path)
    net = ResNet18(in_shape=(3, 32, 32), num_classes=2, weights=str(path))
    torch.testing.assert_close(net.features[3][0].conv1.weight, other["layer1.0.conv1.weight"])
    assert net.head.out_features == 2


BAD_FILES = {  # what each bad file holds, from the reference state dict
    "missing": lambda ref: {k: v for k, v in ref.items() if not k.startswith("layer4.1.")},
    "unexpected": lambda ref: {**ref, "layer5.0.weight": torch.zeros(3)},
    "shapes": lambda ref: {**ref, "layer1.0.conv1.weight": torch.zeros(32, 64, 3, 3)},
    "tensor": lambda ref: torch.zeros(3),
    "dlexp": lambda ref: {"dlexp": {"format": 1}, "state_dict": {"net.head.weight": ref["fc.bias"]}},
    "pickled": lambda ref: resnet18(),  # the whole module: safe loading refuses it
}


@pytest.mark.parametrize(("case", "message"), [
    ("absent", r"model.weights=\S+absent.pth: no such file"),
    ("missing", r"not a torchvision ResNet-18 state dict: 10 missing tensors \(e.g. layer4.1"),
    ("unexpected", r"1 unexpected tensors \(e.g. layer5.0.weight\)"),
    ("shapes", r"shape mismatches \(e.g. layer1.0.conv1.weight \(32, 64, 3, 3\) vs"),
    ("tensor", r"not a state dict \(a mapping of names to tensors\)"),
    ("pickled", r"not a PyTorch file that safe \(weights_only\) loading reads"),
    ("dlexp", r"is a dlexp checkpoint: start from it with transfer=finetune transfer.source="),
])
def test_a_bad_weights_file_is_one_line(case: str, message: str, reference: dict,
                                        tmp_path: Path) -> None:
    path = tmp_path / f"{case}.pth"
    if case in BAD_FILES:
        torch.save(BAD_FILES[case](reference), path)
    with pytest.raises(ConfigError, match=message) as raised:
        _check([f"model.weights={path}"], tmp_path)
    assert "\n" not in str(raised.value)


def test_imagenet_offline_and_uncached_says_where_to_put_the_file(offline_hub: Path,
                                                                  tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        _check(["model.weights=imagenet"], tmp_path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("model.weights=imagenet: ")
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert f"{offline_hub / 'hub' / 'checkpoints'}/" in message and "model.weights=PATH" in message
    with pytest.raises(ConfigError, match="could not be fetched"):  # the old name, the same
        _check(["model.pretrained=true"], tmp_path)


def test_imagenet_from_the_hub_cache_needs_no_network(offline_hub: Path, reference: dict,
                                                      tmp_path: Path) -> None:
    cache = offline_hub / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference, cache / CACHED_NAME)
    _check(["model.weights=imagenet"], tmp_path)
    net = ResNet18(in_shape=(3, 32, 32), weights="imagenet")
    torch.testing.assert_close(net.features[3][1].bn2.weight, reference["layer1.1.bn2.weight"])
    old = ResNet18(in_shape=(3, 32, 32), pretrained=True)  # the deprecated name
    torch.testing.assert_close(old.features[0].weight, net.features[0].weight)


def test_missing_weights_fail_before_any_data_is_read(tmp_path: Path) -> None:
    cfg = compose_train(["data=image_folder", f"data.root={tmp_path / 'no_such_folder'}",
                         "model=resnet18", f"model.weights={tmp_path / 'none.pth'}"], tmp_path)
    with pytest.raises(ConfigError, match="none.pth: no such file"):  # not the folder's error
        fit_and_test(cfg, tmp_path)


def test_weights_and_a_transfer_source_together_are_refused(saved: Path, tmp_path: Path) -> None:
    cfg = compose_train(["model=resnet18", f"model.weights={saved}", "transfer=finetune",
                         f"transfer.source={saved}"], tmp_path)
    with pytest.raises(ConfigError, match="both set the backbone"):
        config.check_transfer(cfg)
    with pytest.raises(ValueError, match="disagree: drop model.pretrained"):
        ResNet18(weights=str(saved), pretrained=True)


@pytest.mark.integration  # a whole (tiny) run
def test_a_run_from_a_weights_file_rebuilds_from_its_checkpoint_alone(
        reference: dict, saved: Path, tmp_path: Path, tiny_mnist: Path) -> None:
    from conftest import FAST, TINY_DATA

    from dlexp import checkpoint
    from dlexp.train import train

    cfg = compose_train([*FAST, *TINY_DATA, "model=resnet18", f"model.weights={saved}",
                         "transfer=feature_extractor", "trainer.max_epochs=1",
                         "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
                         "test=false", "logger=none"], tmp_path / "run", tiny_mnist)
    result = train(cfg)
    assert result["status"] == "ok", result.get("error")
    saved.unlink()  # eval and predict need the checkpoint only
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    task = checkpoint.rebuild_task(checkpoint.load(path), path)
    # feature_extractor froze the backbone: still the file's weights, head trained
    torch.testing.assert_close(task.net.features[3][0].conv1.weight,
                               reference["layer1.0.conv1.weight"])
    torch.testing.assert_close(task.net.features[0].weight,
                               reference["conv1.weight"][:, :, 2:5, 2:5].sum(1, keepdim=True))
