"""Each semi-supervised and transfer variant on the real MNIST, briefly (``pytest -m slow``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST, compose_train

from dlexp.train import train

pytestmark = pytest.mark.slow
PL = "method.callbacks.pseudo_label"


def _run(tmp_path: Path, data: Path, *overrides: str) -> dict:
    metrics = train(compose_train([*FAST, "logger=none", *overrides], tmp_path, data))
    assert metrics["status"] == "ok", metrics.get("error")
    return metrics


def test_supervised_100(tmp_path: Path, real_data_dir: Path) -> None:
    m = _run(tmp_path, real_data_dir, "experiment=mnist_supervised_100", "trainer.max_epochs=40")
    assert m["test/acc"] > 0.6


def test_pseudo_label_round_is_precise(tmp_path: Path, real_data_dir: Path) -> None:
    m = _run(tmp_path, real_data_dir, "experiment=mnist_pseudo_label", f"{PL}.warmup_epochs=60",
             f"{PL}.rounds=1", f"{PL}.epochs_per_round=1", "trainer.max_epochs=61",
             "trainer.check_val_every_n_epoch=61")
    assert m["test/acc"] > 0.7


def test_fixmatch_short(tmp_path: Path, real_data_dir: Path) -> None:
    m = _run(tmp_path, real_data_dir, "experiment=mnist_fixmatch", "trainer.max_epochs=1",
             "+trainer.limit_train_batches=40", "method.callbacks.ema.decay=0.9")
    assert m["test/acc"] > 0.8


def test_transfer_finetune(tmp_path: Path, real_data_dir: Path) -> None:
    _run(tmp_path / "pre", real_data_dir, "experiment=mnist_transfer_pretrain",
         "trainer.max_epochs=1", "+trainer.limit_train_batches=60")
    source = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    # a head on frozen features learns slowly in 30 steps; chance is 0.2
    for mode, floor in (("feature_extractor", 0.6), ("finetune", 0.8)):
        m = _run(tmp_path / mode, real_data_dir, "experiment=mnist_transfer", f"transfer={mode}",
                 f"transfer.source={source}", "trainer.max_epochs=6")
        assert m["test/acc"] > floor, mode
