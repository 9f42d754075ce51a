"""dlexp-eval's data: the checkpoint's data config with the user's ``data.<key>`` overrides, or
another data group with the checkpoint's input pipeline, and only data of the checkpoint's
classes. Whole evaluations are in test_eval_predict.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import DIGIT_NAMES, make_arrays_npz, synthetic_digits
from omegaconf import OmegaConf

from dlexp.data.arrays import ArraysDataModule
from dlexp.errors import ConfigError, DataError
from dlexp.eval import adopt_pipeline, data_config, forced_data_keys

SAVED = {"seed": 3, "data": {"_target_": "dlexp.data.arrays.ArraysDataModule", "path": "a.npz",
                             "root": "/old", "batch_size": 8, "normalize": "unit",
                             "tokenizer": {"vocab_size": 5}}}


def _cfg(data: dict | None = None) -> OmegaConf:
    return OmegaConf.create({"data_dir": "/now", "eval_batch_size": None,
                             "paths": {"data_dir": "/now"}, **({"data": data} if data else {})})


def test_data_keys_are_merged_onto_the_checkpoints_data_config() -> None:
    cfg = _cfg({"path": "b.npz", "tokenizer": {"vocab_size": 9}, "root": "/given"})
    out = data_config(cfg, SAVED, ["ckpt_path=x", "++data.path=b.npz",
                                   "++data.tokenizer.vocab_size=9"], None)
    assert OmegaConf.to_container(out) == {**SAVED["data"], "path": "b.npz", "root": "/now",
                                           "tokenizer": {"vocab_size": 9}}
    out = data_config(cfg, SAVED, ["++data.root=/given", "data_dir=/now"], None)
    assert out.root == "/given" and out.path == "a.npz"  # data.root wins over data_dir


def test_the_checkpoints_data_root_is_kept_while_it_exists(tmp_path: Path) -> None:
    saved = {**SAVED, "data": {**SAVED["data"], "root": str(tmp_path)}}
    assert data_config(_cfg(), saved, [], None).root == str(tmp_path)
    assert data_config(_cfg(), saved, ["data_dir=/now"], None).root == "/now"


def test_another_group_keeps_the_checkpoints_pipeline_keys() -> None:
    group = {"_target_": "dlexp.data.other.Other", "root": "${paths.data_dir}", "seed": "${seed}",
             "unlabeled_ratio": "${method.unlabeled_ratio}", "normalize": "standard",
             "batch_size": 64}
    out = data_config(_cfg(group), SAVED, ["data=other"], "other")
    assert OmegaConf.to_container(out) == {**group, "root": "/now", "seed": 3,
                                           "unlabeled_ratio": None, "normalize": "unit"}
    given = data_config(_cfg(group), SAVED, ["data=other", "++data.normalize=standard"], "other")
    assert given.normalize == "standard"  # what the user sets wins
    same = data_config(_cfg({**SAVED["data"], "batch_size": 128}), SAVED, ["data=arrays"],
                       "arrays")  # the checkpoint's own group: its settings, not the defaults
    assert same.batch_size == 8 and same.normalize == "unit"


def test_a_group_setting_left_unset_is_one_error() -> None:
    group = {"_target_": "dlexp.data.arrays.Other", "path": "???", "root": "${paths.data_dir}"}
    with pytest.raises(ConfigError, match=r"^data\.path is required with data=other: give "
                                          r"data\.path=\.\.\.$"):
        data_config(_cfg(group), SAVED, ["data=other"], "other")


def test_bare_data_keys_become_forced_overrides() -> None:
    argv = ["eval.py", "ckpt_path=x", "data.download=false", "data=arrays", "++data.a=1",
            "trainer.accelerator=cpu"]
    assert forced_data_keys(argv) == ["eval.py", "ckpt_path=x", "++data.download=false",
                                      "data=arrays", "++data.a=1", "trainer.accelerator=cpu"]


def test_new_arrays_take_the_training_statistics(tmp_path: Path) -> None:
    trained = ArraysDataModule(str(make_arrays_npz(tmp_path / "a.npz")), normalize="standard")
    x, y = synthetic_digits(200, seed=9)
    np.savez(tmp_path / "b.npz", x_train=x // 2, y_train=DIGIT_NAMES[y])  # darker, same classes
    new = ArraysDataModule(str(tmp_path / "b.npz"), normalize="standard")
    assert new.mean != trained.mean
    adopt_pipeline(new, trained.describe(), OmegaConf.create({"path": "b.npz"}))
    assert (new.mean, new.std) == (trained.mean, trained.std)


@pytest.mark.parametrize("case", ["other_classes", "other_shape", "other_dtype", "mnist"])
def test_data_the_checkpoint_cannot_read_is_refused(tmp_path: Path, case: str) -> None:
    trained = ArraysDataModule(str(make_arrays_npz(tmp_path / "a.npz")))
    x, y = synthetic_digits(100, seed=2)
    arrays = {"other_classes": {"x_train": x, "y_train": y},  # numbers, not names
              "other_shape": {"x_train": x[:, :20, :20], "y_train": y},
              "other_dtype": {"x_train": x / 255.0, "y_train": y}}.get(case, {})
    info = trained.describe()
    if case == "mnist":
        info = {"name": "mnist", "modality": "image", "class_names": info["class_names"]}
        arrays = {"x_train": x, "y_train": y}
    np.savez(tmp_path / "b.npz", **arrays)
    new = ArraysDataModule(str(tmp_path / "b.npz"))
    if case != "other_classes":
        info = {**info, "class_names": new.class_names}
    error = ConfigError if case == "mnist" else DataError
    with pytest.raises(error) as e:
        adopt_pipeline(new, info, OmegaConf.create({"_target_": "x.ArraysDataModule",
                                                    "path": "b.npz"}))
    message = str(e.value)
    assert {"other_classes": "ArraysDataModule (b.npz) does not hold the checkpoint's classes: "
                             "missing 'eight', 'five'",
            "other_shape": "samples have shape (1, 20, 20) (in the network's layout) but the "
                           "checkpoint's model takes (1, 28, 28)",
            "other_dtype": "the inputs are float64, the checkpoint was trained on uint8",
            "mnist": "cannot read inputs as the training of this data=mnist checkpoint did",
            }[case] in message
