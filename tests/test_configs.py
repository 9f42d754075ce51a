"""Every option of every config group composes, and what it describes instantiates."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import CONFIG_DIR, TINY_DATA, compose_train
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf

from dlexp import checkpoint, config
from dlexp.builders import build_callbacks, build_net, build_task, instantiate_all
from dlexp.errors import ConfigError

GROUPS = ["data", "model", "loss", "optimizer", "scheduler", "regularization", "callbacks",
          "logger", "trainer", "method", "transfer", "experiment", "debug"]
# an option that needs a partner to form a working pair (data=imdb keeps the default CNN)
PARTNERS = {("data", "imdb"): ["model=lstm"], ("data", "arrays"): ["data.path=arrays.npz"],
            ("data", "text_table"): ["model=lstm", "data.path=texts.csv",
                                     "data.cache_dir=${paths.data_dir}/cache"],
            ("data", "text_folder"): ["model=lstm", "data.root=${paths.data_dir}/aclImdb",
                                      "data.cache_dir=${paths.data_dir}/cache"],
            ("data", "image_folder"): ["data.root=images"],
            ("loss", "bce"): ["data=text_table", "model=lstm", "data.path=texts.csv",
                              "data.cache_dir=${paths.data_dir}/cache", "data.label_sep=','"],
            ("model", "lstm"): ["data=imdb"],
            ("model", "gru"): ["data=imdb"], ("model", "rnn"): ["data=imdb"],
            ("experiment", "imdb_supervised_1000"): ["data.num_labeled=20"],
            ("experiment", "imdb_pseudo_label"): ["data.num_labeled=20"],
            ("experiment", "imdb_fixmatch"): ["data.num_labeled=20"],
            ("transfer", "finetune"): ["transfer.source=source.ckpt"],
            ("transfer", "gradual"): ["transfer.source=source.ckpt", "scheduler=none"],
            ("transfer", "feature_extractor"): ["transfer.source=source.ckpt"],
            ("experiment", "imdb_lstm_best"): ["transfer.source=source.ckpt"],
            ("experiment", "imdb_lm"): ["method.task.cutoffs=[10]"],
            ("method", "adversarial"): ["data=imdb", "model=lstm"],
            ("method", "language_model"): ["data=imdb", "model=lstm", "model.bidirectional=false",
                                           "method.task.cutoffs=[10]"]}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g)]


@pytest.mark.integration  # ~0.5 s a case: each reads its data
@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_instantiates(group: str, option: str, tmp_path: Path,
                                          tiny_data: Path) -> None:
    overrides = [f"{group}={option}", *PARTNERS.get((group, option), []), *TINY_DATA]
    cfg = compose_train(overrides, tmp_path, tiny_data)
    assert cfg.hydra.runtime.choices[group] == option
    config.check(cfg)
    datamodule = instantiate(cfg.data)
    info = datamodule.describe()
    net = build_net(cfg.model, info)
    task = build_task(cfg, net, datamodule, checkpoint.extras(cfg, info))
    logits = task(dummy_inputs(info))
    assert logits.shape == (2, datamodule.num_classes)
    callbacks = build_callbacks(cfg, has_logger=True, validate=config.has_validation(cfg))
    assert all(isinstance(c, L.Callback) for c in callbacks)
    assert all(isinstance(lg, Logger) for lg in instantiate_all(cfg.logger, "logger"))


def dummy_inputs(data_info: dict) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Two all-zero images, or two short reviews of unknown tokens."""
    if data_info["modality"] == "text":
        return torch.ones(2, 5, dtype=torch.long), torch.tensor([5, 3])
    return torch.zeros(2, *data_info["net_kwargs"]["in_shape"])


@pytest.mark.parametrize(("overrides", "message"), [
    (["data=imdb"], "model CNN takes image input but data imdb gives text: use model=lstm, "
                    "gru or rnn, or data=mnist, image_folder or arrays for this model"),
    (["model=lstm"], "model RNNClassifier takes text input but data mnist gives image: use "
                     "model=cnn, mlp or resnet18, or data=imdb, text_table or text_folder for "
                     "this model"),
    (["data=text_table", "data.path=texts.csv"], "model CNN takes image input but data "
                                                 "text_table gives text"),
])
def test_model_and_data_that_do_not_fit_are_refused(overrides: list[str], message: str,
                                                    tmp_path: Path) -> None:
    cfg = compose_train([*overrides, *TINY_DATA], tmp_path, tmp_path / "no data here")
    with pytest.raises(ConfigError, match=message):  # from the config alone: no data read
        config.check_pair(cfg)


def test_a_group_choice_changes_only_its_own_group(tmp_path: Path) -> None:
    base = compose_train([], tmp_path)
    for group, option in [("model", "lstm"), ("model", "gru"), ("method", "fixmatch"),
                          ("method", "pseudo_label")]:
        chosen = compose_train([f"{group}={option}"], tmp_path)
        written = [OmegaConf.to_container(c, resolve=False) for c in (base, chosen)]
        changed = {k for k in written[0] if k != "hydra" and written[0][k] != written[1][k]}
        assert changed == {group}, (group, option, changed)
    # data reads the method's unlabeled_ratio by name, visibly in conf/data/*.yaml
    assert compose_train(["method=fixmatch"], tmp_path).data.unlabeled_ratio == 7


def test_mlp_course_preset_is_the_course_network(tmp_path: Path, tiny_mnist: Path) -> None:
    cfg = compose_train(["experiment=mnist_mlp_course"], tmp_path, tiny_mnist)
    net = build_net(cfg.model, instantiate(cfg.data).describe())
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
    assert not config.has_validation(cfg)
    # the checkpoint kept is the last: the best-by-validation one is dropped with validation
    kept = build_callbacks(cfg, has_logger=True, validate=False)
    assert [c.monitor for c in kept if isinstance(c, ModelCheckpoint)] == [None]
    biases = [m.bias for m in net.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    assert all(torch.count_nonzero(b) == 0 for b in biases)  # Keras' zero biases


def test_cnn_course_preset_is_the_course_network(tmp_path: Path, tiny_mnist: Path) -> None:
    cfg = compose_train(["experiment=mnist_cnn_course"], tmp_path, tiny_mnist)
    net = build_net(cfg.model, instantiate(cfg.data).describe())
    convs = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert convs == [32, 64, 128] and dense == [200, 10]
    assert cfg.optimizer.lr == 0.008 and cfg.data.batch_size == 50
    assert cfg.loss._target_.endswith("SoftmaxMSE")
    _fits_like_keras(cfg, net)


def test_a_sweep_without_validation_needs_another_monitor(tmp_path: Path, tiny_mnist: Path) -> None:
    cfg = compose_train(["experiment=mnist_mlp_course"], tmp_path, tiny_mnist)  # val_size=0
    config.check_without_validation(cfg)  # one run: fine, val/* are null
    with pytest.raises(ConfigError, match="a sweep optimises monitor.metric=val/acc, but "
                                          "data.val_size=0 leaves no validation set"):
        config.check_without_validation(cfg, sweeping=True)
    cfg.monitor.metric = "train/acc"
    config.check_without_validation(cfg, sweeping=True)
