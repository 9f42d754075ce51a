"""Pseudo-label selection (threshold, caps, balance) and the self-training rounds end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import FAST, TINY_DATA, compose_train

from dlexp.errors import ConfigError
from dlexp.methods.pseudo_label import PseudoLabel, precision_per_class, select_pseudo_labels
from dlexp.train import train

MLP = ["model=mlp", "model.hidden=[64]", "model.dropout=0.0"]
PL = "method.callbacks.pseudo_label"


def _probs(rows: list[tuple[int, float]], k: int = 3) -> torch.Tensor:
    """One row per sample: (predicted class, its probability); the rest spread evenly."""
    p = torch.empty(len(rows), k)
    for i, (c, conf) in enumerate(rows):
        p[i] = (1 - conf) / (k - 1)
        p[i, c] = conf
    return p


def test_threshold_keeps_only_confident_predictions() -> None:
    probs = _probs([(0, 0.99), (1, 0.5), (2, 0.96), (1, 0.97), (0, 0.94)])
    idx, labels = select_pseudo_labels(probs, threshold=0.95, balanced=False)
    assert idx.tolist() == [0, 2, 3] and labels.tolist() == [0, 2, 1]


def test_per_class_cap_keeps_the_most_confident() -> None:
    probs = _probs([(0, 0.96), (0, 0.99), (0, 0.97), (1, 0.98), (2, 0.99), (2, 0.999)])
    idx, labels = select_pseudo_labels(probs, threshold=0.9, per_class_cap=1, balanced=False)
    assert idx.tolist() == [1, 3, 5] and labels.tolist() == [0, 1, 2]
    idx, _ = select_pseudo_labels(probs, threshold=0.9, per_class_cap=2, balanced=False)
    assert idx.tolist() == [1, 2, 3, 4, 5]


def test_balanced_gives_every_class_the_scarcest_count() -> None:
    probs = _probs([(0, 0.99)] * 5 + [(1, 0.99)] * 2 + [(2, 0.99)] * 3)
    _, labels = select_pseudo_labels(probs, threshold=0.9, per_class_cap=10, balanced=True)
    assert torch.bincount(labels, minlength=3).tolist() == [2, 2, 2]
    # a class with no confident prediction stops the round rather than skew it
    probs = _probs([(0, 0.99)] * 4 + [(1, 0.99)] * 4 + [(2, 0.5)])
    idx, _ = select_pseudo_labels(probs, threshold=0.9, balanced=True)
    assert len(idx) == 0


def test_precision_per_class_counts_hits() -> None:
    added, checkable, correct = precision_per_class(torch.tensor([0, 0, 1, 2, 2]),
                                                    torch.tensor([0, 1, 1, 0, -1]), 3)
    assert added.tolist() == [2, 1, 2] and correct.tolist() == [1, 1, 0]
    assert checkable.tolist() == [2, 1, 1]  # -1: true label unknown, not counted


@pytest.mark.parametrize("kwargs", [{"rounds": -1}, {"epochs_per_round": 0},
                                    {"restart": "scratch"}, {"threshold": 1.5}])
def test_bad_options_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="pseudo_label"):
        PseudoLabel(**kwargs)


def _run(tmp_path: Path, data: Path, *overrides: str) -> tuple[dict, PseudoLabel]:
    cfg = compose_train([*FAST, *TINY_DATA, *MLP, "method=pseudo_label", "data.num_labeled=50",
                         "logger=csv", f"{PL}.epochs_per_round=1", f"{PL}.warmup_epochs=3",
                         f"{PL}.rounds=2", f"{PL}.threshold=0.5", f"{PL}.per_class_cap=15",
                         "optimizer.lr=0.01",
                         "trainer.max_epochs=5", *overrides], tmp_path, data)
    seen: list[PseudoLabel] = []
    original = PseudoLabel.setup

    def spy(self, trainer, pl_module, stage):  # keep the callback the run builds
        seen.append(self)
        return original(self, trainer, pl_module, stage)

    PseudoLabel.setup = spy
    try:
        metrics = train(cfg)
    finally:
        PseudoLabel.setup = original
    return metrics, seen[0]


def test_rounds_add_balanced_pseudo_labels_and_log_them(tmp_path: Path, tiny_mnist: Path
                                                        ) -> None:
    metrics, cb = _run(tmp_path, tiny_mnist)
    assert metrics["status"] == "ok", metrics.get("error")
    assert [r["round"] for r in cb.history] == [1, 2]
    first, second = cb.history
    assert first["pool"] == 450 and 0 < first["added"] <= 150  # cap 15 x 10 classes
    assert len(set(first["added_per_class"])) == 1  # balanced
    assert second["added"] <= 300  # the cap grows with the round
    assert first["precision"] > 0.5  # the generated digits are easy
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("pseudo/added")]
    assert [float(r["pseudo/round"]) for r in rows] == [1.0, 2.0]
    assert {"pseudo/precision", "pseudo/added_c0"} <= set(rows[0])
    # more steps per epoch once pseudo labels join the 50 labeled samples (2 steps at batch 32)
    assert metrics["global_step"] > 5 * 2


def test_reinit_restarts_from_the_initial_weights(tmp_path: Path, tiny_mnist: Path) -> None:
    metrics, cb = _run(tmp_path, tiny_mnist, f"{PL}.restart=reinit", f"{PL}.rounds=1",
                       "trainer.max_epochs=4")
    assert metrics["status"] == "ok", metrics.get("error")
    assert cb._initial is not None and len(cb.history) == 1


def test_needs_one_device_and_a_datamodule_with_a_pool(tiny_mnist: Path) -> None:
    from types import SimpleNamespace

    from dlexp.data.mnist import MNISTDataModule

    cb = PseudoLabel()
    with pytest.raises(ConfigError, match="unlabeled pool"):
        cb.setup(SimpleNamespace(datamodule=object(), world_size=1), None, "fit")
    ddp = SimpleNamespace(datamodule=MNISTDataModule(root=str(tiny_mnist)), world_size=2)
    with pytest.raises(ConfigError, match="trainer.devices=1"):
        cb.setup(ddp, None, "fit")
