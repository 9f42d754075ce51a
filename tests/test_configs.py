"""Every option of every config group composes, and what it describes instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import CONFIG_DIR, TINY_DATA, compose_train
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint

from dlexp import wiring
from dlexp.errors import ConfigError

GROUPS = ["data", "model", "loss", "optimizer", "scheduler", "regularization", "callbacks",
          "logger", "trainer", "method", "transfer", "experiment", "debug"]
# an option that needs a partner to form a working pair (data=imdb keeps the default CNN)
PARTNERS = {("data", "imdb"): ["model=lstm"],
            ("experiment", "imdb_supervised_1000"): ["data.num_labeled=20"],
            ("experiment", "imdb_pseudo_label"): ["data.num_labeled=20"],
            ("experiment", "imdb_fixmatch"): ["data.num_labeled=20"]}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert options(group), f"conf/{group}/ is empty"


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_instantiates(group: str, option: str, tmp_path: Path,
                                          tiny_data: Path) -> None:
    overrides = [f"{group}={option}", *PARTNERS.get((group, option), []), *TINY_DATA]
    cfg = compose_train(overrides, tmp_path, tiny_data)
    assert cfg.hydra.runtime.choices[group] == option
    datamodule = wiring.build_datamodule(cfg)
    net = wiring.build_net(cfg.model, datamodule.describe())
    task = wiring.build_task(cfg, net, datamodule)
    logits = task(dummy_inputs(datamodule.describe()))
    assert logits.shape == (2, datamodule.num_classes)
    loggers = wiring.build_loggers(cfg)
    callbacks = wiring.build_callbacks(cfg, has_logger=bool(loggers))
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        return  # composes; instantiating a GPU trainer needs a GPU
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


def dummy_inputs(data_info: dict) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Two all-zero images, or two short reviews of unknown tokens."""
    if data_info["modality"] == "text":
        return torch.ones(2, 5, dtype=torch.long), torch.tensor([5, 3])
    return torch.zeros(2, *data_info["net_kwargs"]["in_shape"])


def test_model_lstm_alone_picks_imdb(tmp_path: Path, tiny_data: Path) -> None:
    cfg = compose_train(["model=gru"], tmp_path, tiny_data)
    assert cfg.hydra.runtime.choices.data == "imdb" and cfg.model.cell == "gru"
    assert cfg.trainer.gradient_clip_val == 1.0  # RNNs clip by default
    assert compose_train(["model=lstm", "trainer.gradient_clip_val=null"], tmp_path,
                         tiny_data).trainer.gradient_clip_val is None


@pytest.mark.parametrize(("overrides", "message"), [
    (["data=imdb"], "model CNN takes image input but data imdb gives text: use model=lstm"),
    (["model=lstm", "data=mnist"], "model RNNClassifier takes text input but data mnist gives "
                                   "image: use model=cnn or model=mlp, or data=imdb"),
])
def test_model_and_data_that_do_not_fit_are_refused(overrides: list[str], message: str,
                                                    tmp_path: Path, tiny_data: Path) -> None:
    cfg = compose_train([*overrides, *TINY_DATA], tmp_path, tiny_data)
    with pytest.raises(ConfigError, match=message):
        wiring.build_net(cfg.model, wiring.build_datamodule(cfg).describe())


def test_mlp_course_preset_is_the_course_network(tmp_path: Path, tiny_mnist: Path) -> None:
    cfg = compose_train(["experiment=mnist_mlp_course"], tmp_path, tiny_mnist)
    net = wiring.build_net(cfg.model, wiring.build_datamodule(cfg).describe())
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [800, 800, 10]
    assert any(isinstance(m, torch.nn.Sigmoid) for m in net.modules())
    assert {m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)} == {0.4}
    assert cfg.loss._target_.endswith("SoftmaxMSE")
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.1
    assert cfg.data.batch_size == 50 and cfg.trainer.max_epochs == 40
    _fits_like_keras(cfg, net)


def _fits_like_keras(cfg, net: torch.nn.Module) -> None:
    """The course's Keras code: raw 0-255 inputs, all 60k for training, glorot init."""
    assert cfg.data.normalize == "none" and cfg.data.val_size == 0
    assert not wiring.has_validation(cfg)
    assert all(not isinstance(c, ModelCheckpoint) or c.monitor is None
               for c in wiring.build_callbacks(cfg))  # the last weights are the ones tested
    biases = [m.bias for m in net.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    assert all(torch.count_nonzero(b) == 0 for b in biases)  # Keras' zero biases


def test_cnn_course_preset_is_the_course_network(tmp_path: Path, tiny_mnist: Path) -> None:
    cfg = compose_train(["experiment=mnist_cnn_course"], tmp_path, tiny_mnist)
    net = wiring.build_net(cfg.model, wiring.build_datamodule(cfg).describe())
    convs = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert convs == [32, 64, 128] and dense == [200, 10]
    assert cfg.optimizer.lr == 0.008 and cfg.data.batch_size == 50
    assert cfg.loss._target_.endswith("SoftmaxMSE")
    _fits_like_keras(cfg, net)


def test_a_sweep_without_validation_needs_another_monitor(tmp_path: Path, tiny_mnist: Path) -> None:
    cfg = compose_train(["experiment=mnist_mlp_course"], tmp_path, tiny_mnist)  # val_size=0
    wiring.check_without_validation(cfg)  # one run: fine, val/* are null
    with pytest.raises(ConfigError, match="a sweep optimises monitor.metric=val/acc, but "
                                          "data.val_size=0 leaves no validation set"):
        wiring.check_without_validation(cfg, sweeping=True)
    cfg.monitor.metric = "train/acc"
    wiring.check_without_validation(cfg, sweeping=True)
