"""The semi-supervised and transfer presets compose and run one batch of everything."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST, TINY_DATA, compose_train
from hydra.utils import instantiate

from dlexp.builders import instantiate_all
from dlexp.train import train

PRESETS = ["mnist_supervised_100", "mnist_pseudo_label", "mnist_pseudo_label_long",
           "mnist_fixmatch", "mnist_fixmatch_best",
           "mnist_transfer_pretrain", "mnist_transfer"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_with_fast_dev_run(preset: str, tmp_path: Path, tiny_mnist: Path) -> None:
    # the generated data is small: fewer labels than the real presets ask for
    cfg = compose_train([*FAST, *TINY_DATA, f"experiment={preset}", "debug=fdr",
                         "data.num_labeled=50" if "pretrain" not in preset else "seed=1"],
                        tmp_path, tiny_mnist)
    metrics = train(cfg)
    assert metrics["status"] == "ok", metrics.get("error")


@pytest.mark.parametrize(("group", "option"), [
    ("method", "supervised"), ("method", "pseudo_label"), ("method", "fixmatch"),
    ("transfer", "none"), ("transfer", "finetune"), ("transfer", "feature_extractor"),
    ("transfer", "gradual")])
def test_options_compose_and_pick_their_code(group: str, option: str, tmp_path: Path,
                                             tiny_mnist: Path) -> None:
    cfg = compose_train([f"{group}={option}"], tmp_path, tiny_mnist)
    assert cfg.hydra.runtime.choices[group] == option
    if group == "method":
        expected = "FixMatchTask" if option == "fixmatch" else "ClassificationTask"
        assert instantiate(cfg.method.task, _partial_=True).func.__name__ == expected
        names = [type(c).__name__ for c in instantiate_all(cfg.method.callbacks, "method.callbacks")]
        assert names == {"pseudo_label": ["PseudoLabel"], "fixmatch": ["EMA"]}.get(option, [])
    else:
        assert cfg.transfer.mode == option
