"""TrainingCurves: the per-epoch history of a run, as figures/curves.{csv,png}."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.pyplot as plt
from conftest import FAST, TINY_DATA, compose_train

from dlexp.callbacks.training_curves import COLUMNS, curves_figure
from dlexp.train import train

MLP = ["model=mlp", "model.hidden=[64]", "model.dropout=0.0"]


def _history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "figures" / "curves.csv") as f:
        return list(csv.DictReader(f))


def test_a_run_writes_one_row_per_epoch_and_the_plot(tmp_path: Path, tiny_mnist: Path) -> None:
    metrics = train(compose_train([*FAST, *TINY_DATA, *MLP, "trainer.max_epochs=4",
                                   "callbacks=no_early_stopping"], tmp_path, tiny_mnist))
    assert metrics["status"] == "ok", metrics.get("error")
    rows = _history(tmp_path)
    assert list(rows[0]) == COLUMNS and [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    losses = [float(r["train/loss_epoch"]) for r in rows]
    assert losses[-1] < 0.5 * losses[0]  # the tiny run learns
    assert all(0 <= float(r["val/acc"]) <= 1 for r in rows)
    assert (tmp_path / "figures" / "curves.png").stat().st_size > 10_000


def test_without_validation_only_training_is_plotted(tmp_path: Path, tiny_mnist: Path) -> None:
    metrics = train(compose_train([*FAST, *TINY_DATA, *MLP, "trainer.max_epochs=2",
                                   "data.val_size=0", "callbacks=no_early_stopping"],
                                  tmp_path, tiny_mnist))
    assert metrics["status"] == "ok", metrics.get("error")
    rows = _history(tmp_path)
    assert len(rows) == 2 and all(r["val/loss"] == "" and r["train/acc"] for r in rows)


def test_figure_has_a_loss_and_an_accuracy_panel() -> None:
    rows = [{"epoch": 1, "train/loss_epoch": 1.0, "val/loss": 0.9, "train/acc": 0.5},
            {"epoch": 2, "train/loss_epoch": 0.5, "val/loss": 0.6, "train/acc": 0.8}]
    fig = curves_figure(rows)
    loss, acc = fig.axes
    assert [line.get_label() for line in loss.lines] == ["train", "val"]
    assert [line.get_label() for line in acc.lines] == ["train"]  # no val/acc recorded
    assert list(loss.lines[0].get_ydata()) == [1.0, 0.5]
    plt.close(fig)


def test_epochs_without_validation_stay_blank_and_resume_keeps_the_rows(
        tmp_path: Path, tiny_mnist: Path) -> None:
    first = train(compose_train([*FAST, *TINY_DATA, *MLP, "trainer.max_epochs=3",
                                 "trainer.check_val_every_n_epoch=2",
                                 "callbacks=no_early_stopping"], tmp_path / "a", tiny_mnist))
    assert first["status"] == "ok", first.get("error")
    rows = _history(tmp_path / "a")
    assert [r["val/acc"] != "" for r in rows] == [False, True, False]  # validated at epoch 2
    resumed = train(compose_train([*FAST, *TINY_DATA, *MLP, "trainer.max_epochs=4",
                                   "trainer.check_val_every_n_epoch=2",
                                   "callbacks=no_early_stopping",
                                   f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"],
                                  tmp_path / "b", tiny_mnist))
    assert resumed["status"] == "ok", resumed.get("error")
    again = _history(tmp_path / "b")
    # last.ckpt was written when epoch 3 ended: epochs 1-3 come from it, 4 is the new run's
    assert [r["epoch"] for r in again] == ["1", "2", "3", "4"] and again[:3] == rows
    assert all(float(r["train/loss_epoch"]) > 0 for r in again)
