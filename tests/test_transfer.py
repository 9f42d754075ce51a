"""Transfer learning from a dlexp checkpoint: each mode end to end, frozen weights that really
stay put, and clear refusals of checkpoints that do not fit."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import FAST, TINY_DATA, compose_train

from dlexp import checkpoint, config, transfer
from dlexp.data.tokenizer import to_json, train_tokenizer
from dlexp.errors import CheckpointError, ConfigError
from dlexp.models.cnn import CNN
from dlexp.models.rnn import RNNClassifier
from dlexp.schedulers import Horizon, onecycle
from dlexp.train import train

CNN_SMALL = ["model=cnn", "model.blocks=[{filters: 8, batchnorm: true}]", "model.dense=[16]",
             "model.dropout=0.3"]
SOURCE_CLASSES, TARGET_CLASSES = "data.classes=[0,1,2,3,4]", "data.classes=[5,6,7,8,9]"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, tiny_mnist: Path) -> Path:
    """A CNN trained on digits 0-4 of the generated data."""
    out = tmp_path_factory.mktemp("source")
    metrics = train(compose_train([*FAST, *TINY_DATA, *CNN_SMALL, SOURCE_CLASSES,
                                   "trainer.max_epochs=1", "logger=none"], out, tiny_mnist))
    assert metrics["status"] == "ok", metrics.get("error")
    return out / "checkpoints" / "last.ckpt"


def _transfer(tmp_path: Path, data: Path, source: Path, mode: str, *overrides: str) -> dict:
    cfg = compose_train([*FAST, *TINY_DATA, *CNN_SMALL, TARGET_CLASSES, "data.num_labeled=100",
                         f"transfer={mode}", f"transfer.source={source}", "logger=none",
                         "optimizer.lr=0.01",
                         *overrides], tmp_path, data)
    return train(cfg)


def _net_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return {k[4:]: v for k, v in state.items() if k.startswith("net.")}


def test_finetune_trains_everything(tmp_path: Path, tiny_mnist: Path, source: Path) -> None:
    metrics = _transfer(tmp_path, tiny_mnist, source, "finetune", "trainer.max_epochs=2")
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["test/acc"] > 0.3  # 5 classes: chance is 0.2
    after = _net_state(tmp_path / "checkpoints" / "last.ckpt")
    assert not torch.equal(after["features.0.0.weight"], _net_state(source)["features.0.0.weight"])


def test_feature_extractor_changes_only_the_head(tmp_path: Path, tiny_mnist: Path,
                                                 source: Path) -> None:
    metrics = _transfer(tmp_path, tiny_mnist, source, "feature_extractor",
                        "trainer.max_epochs=2")
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["test/acc"] > 0.3
    before, after = _net_state(source), _net_state(tmp_path / "checkpoints" / "last.ckpt")
    backbone = [k for k in after if not k.startswith("head.")]
    assert any("running_mean" in k for k in backbone)  # BatchNorm statistics are checked too
    for k in backbone:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(after["head.weight"], before["head.weight"])


def test_feature_extractor_can_train_the_dense_layers_too(tmp_path: Path, tiny_mnist: Path,
                                                          source: Path) -> None:
    metrics = _transfer(tmp_path, tiny_mnist, source, "feature_extractor",
                        "trainer.max_epochs=2", "transfer.train_also=[classifier]")
    assert metrics["status"] == "ok", metrics.get("error")
    before, after = _net_state(source), _net_state(tmp_path / "checkpoints" / "last.ckpt")
    for k in (k for k in after if k.startswith("features.")):  # the conv features stay fixed
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, msg=k)
    dense = [k for k in after if k.startswith("classifier.") and k.endswith("weight")]
    assert dense and all(not torch.equal(after[k], before[k]) for k in dense)
    with pytest.raises(ConfigError, match=r"has no \['dense'\]; its parts before the head are "
                                          r"features, classifier"):
        transfer.split(CNN(), ["dense"])


def test_gradual_unfreezes_at_the_chosen_epoch(tmp_path: Path, tiny_mnist: Path,
                                               source: Path) -> None:
    first = _transfer(tmp_path / "a", tiny_mnist, source, "gradual", "trainer.max_epochs=1",
                      "transfer.unfreeze_at_epoch=5")
    assert first["status"] == "ok", first.get("error")
    frozen = _net_state(tmp_path / "a" / "checkpoints" / "last.ckpt")
    assert torch.equal(frozen["features.0.0.weight"], _net_state(source)["features.0.0.weight"])
    later = _transfer(tmp_path / "b", tiny_mnist, source, "gradual", "trainer.max_epochs=2",
                      "transfer.unfreeze_at_epoch=1")
    assert later["status"] == "ok", later.get("error")
    moved = _net_state(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert not torch.equal(moved["features.0.0.weight"], frozen["features.0.0.weight"])


def test_loading_reports_loaded_skipped_and_reinitialised(source: Path, caplog) -> None:
    net = CNN(blocks=[{"filters": 8, "batchnorm": True}], dense=[16], num_classes=3)
    with caplog.at_level(logging.INFO, logger="dlexp.transfer"):
        report = transfer.load_source(net, checkpoint.load(source), str(source), keep_head=True)
    assert report["reinitialised"] == ["head.weight", "head.bias"]
    assert any(s.startswith("head.weight ((5, 16) vs (3, 16))") for s in report["skipped"])
    assert "features.0.0.weight" in report["loaded"]
    assert "loaded" in caplog.text and "reinitialised" in caplog.text
    torch.testing.assert_close(net.features[0][0].weight,
                               _net_state(source)["features.0.0.weight"])


def test_another_architecture_is_refused(tmp_path: Path, tiny_mnist: Path, source: Path) -> None:
    options = {"mode": "finetune", "source": str(source)}
    with pytest.raises(CheckpointError, match="holds a CNN but this run builds a MLP"):
        transfer.read_source(options, "dlexp.models.mlp.MLP")
    path, ckpt = transfer.read_source(options, "dlexp.models.cnn.CNN")
    wider = CNN(blocks=[{"filters": 16, "batchnorm": True}], dense=[16])
    with pytest.raises(CheckpointError, match="another CNN architecture: .* shape mismatch"):
        transfer.load_source(wider, ckpt, path)
    cfg = compose_train([*FAST, *TINY_DATA, "model=mlp", TARGET_CLASSES, "transfer=finetune",
                         f"transfer.source={source}"], tmp_path, tiny_mnist)
    metrics = train(cfg)
    assert metrics["status"] == "failed" and "transfer needs the same architecture" in \
        metrics["error"]


def test_a_source_trained_on_other_input_scaling_is_refused(tmp_path: Path, tiny_mnist: Path,
                                                           source: Path) -> None:
    metrics = _transfer(tmp_path, tiny_mnist, source, "finetune", "data.normalize=none")
    assert metrics["status"] == "failed"
    assert "was trained on inputs normalised with mean/std" in metrics["error"]
    assert "set the same data.normalize as the source run" in metrics["error"]


def test_bad_transfer_settings_fail_before_training(tmp_path: Path, tiny_mnist: Path) -> None:
    cfg = compose_train([*FAST, *TINY_DATA, "transfer=finetune"], tmp_path, tiny_mnist)
    metrics = train(cfg)
    assert metrics["status"] == "failed" and "needs transfer.source=" in metrics["error"]
    cfg = compose_train([*FAST, "transfer=gradual", "transfer.source=x.ckpt",
                         "scheduler=onecycle"], tmp_path, tiny_mnist)
    with pytest.raises(ConfigError, match="scheduler=onecycle"):
        config.check_transfer(cfg)
    with pytest.raises(ConfigError, match="transfer.mode must be one of"):
        transfer.read_source({"mode": "freeze"}, "dlexp.models.cnn.CNN")
    with pytest.raises(ConfigError, match="`head`"):
        transfer.split(torch.nn.Linear(2, 2))


def test_lr_decay_gives_each_lower_layer_group_a_smaller_lr() -> None:
    net = RNNClassifier(40, embedding_dim=8, hidden_size=8, num_layers=2, bidirectional=False)
    groups = transfer.layer_groups(net)
    assert [len(g) for g in groups] == [1, 4, 4, 2]  # embedding, two LSTM layers, head
    factory = transfer.discriminative(partial(torch.optim.Adam, lr=0.01), net, 2.0)
    net.embedding.weight.requires_grad_(False)  # a frozen parameter stays out
    opt = factory([p for p in net.parameters() if p.requires_grad])
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.005, 0.0025]
    assert opt.param_groups[0]["params"][0] is net.head.weight
    assert transfer.discriminative(torch.optim.Adam, net, None) is torch.optim.Adam
    with pytest.raises(ConfigError, match="lr_decay must be a number >= 1"):
        transfer.discriminative(partial(torch.optim.Adam, lr=0.01), net, 0.5)


def test_a_text_sources_tokenizer_is_given_to_the_data(caplog: pytest.LogCaptureFixture) -> None:
    class Data:
        tokenizer = {"model": "word", "vocab_size": 50, "min_frequency": 1}

        def use_pipeline(self, info: dict, truncation: bool = True) -> None:
            self.given = (info, truncation)

    info = {"modality": "text", "tokenizer": to_json(train_tokenizer(["a b c"], "word", 10, 1))}
    config = {"data": {"tokenizer": {"model": "word", "vocab_size": 200, "min_frequency": 1}}}
    data = Data()
    transfer.use_source_tokenizer(data, ("lm.ckpt", {"dlexp": {"data": info, "config": config}}))
    assert data.given == (info, False)  # the run's own max_len and truncate stay
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "encoding with its tokenizer (5 words)" in warning
    assert "data.tokenizer vocab_size=50 (the source's: 200) not used" in warning
    image = Data()
    transfer.use_source_tokenizer(image, ("cnn.ckpt", {"dlexp": {"data": {"mean": [0.1]},
                                                                  "config": {}}}))
    transfer.use_source_tokenizer(image, None)
    assert not hasattr(image, "given")


def test_a_source_with_another_tokenizer_is_refused() -> None:
    with pytest.raises(CheckpointError, match="another tokenizer"):
        transfer._check_inputs({"tokenizer": '{"a": 1}'}, {"tokenizer": '{"a": 2}'}, "lm.ckpt")
    transfer._check_inputs({"tokenizer": "same"}, {"tokenizer": "same"}, "lm.ckpt")


def test_onecycle_keeps_the_lr_decay_ratios() -> None:
    net = RNNClassifier(40, embedding_dim=8, hidden_size=8, bidirectional=False)
    opt = transfer.discriminative(partial(torch.optim.Adam, lr=0.01), net, 2.0)(
        list(net.parameters()))
    scheduler = onecycle(opt, Horizon(total_steps=10, max_epochs=1), max_lr=0.04)
    assert [g["max_lr"] for g in scheduler.optimizer.param_groups] == [0.04, 0.02, 0.01]
