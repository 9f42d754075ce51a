"""Keras' ``History`` plot: loss and accuracy per epoch, training against validation, written as
``figures/curves.png`` (and the numbers as ``figures/curves.csv``) when fitting ends."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import matplotlib
from lightning.pytorch.trainer.states import TrainerFn

matplotlib.use("Agg")  # no display on servers and clusters
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

PANELS = {"loss": ("train/loss_epoch", "val/loss"), "accuracy": ("train/acc", "val/acc")}
COLUMNS = ["epoch", *(key for keys in PANELS.values() for key in keys)]


def curves_figure(rows: list[dict[str, float]]) -> plt.Figure:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(9, 3.4), dpi=100)
    for ax, (name, keys) in zip(axes, PANELS.items(), strict=True):
        for key in keys:
            points = [(r["epoch"], r[key]) for r in rows if math.isfinite(r.get(key, math.nan))]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3,
                        label=key.split("/")[0])
        ax.set(xlabel="epoch", ylabel=name, title=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


class TrainingCurves(L.Callback):
    """Records the epoch metrics after each training epoch and plots them at the end of fit.

    The task logs ``train/*`` in its own ``on_train_epoch_end``, after the callbacks' hook, so an
    epoch is read when the next one starts, when training ends, or when a checkpoint saved at
    the epoch's end (``last.ckpt``) is written: that checkpoint carries every row up to the
    epoch it closes, so a resumed run loses none. ``val/*`` are taken when a validation ends,
    so epochs without one (``check_val_every_n_epoch``) stay blank."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.rows: list[dict[str, float]] = []
        self._val: dict[str, float] = {}
        self._closing: int | None = None  # epochs completed once this epoch's end is logged
        self._restored = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            metrics = trainer.callback_metrics
            self._val = {k: float(metrics[k]) for k in COLUMNS[1:]
                         if k.startswith("val/") and k in metrics}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored:  # the metrics at hand are a restored run's placeholders
            self._restored, self._val = False, {}
        elif trainer.current_epoch > 0:
            self._record(trainer, trainer.current_epoch)
        self._closing = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._closing = trainer.current_epoch + 1

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict) -> None:
        if self._closing is not None:  # saved at the epoch's end: its metrics are logged
            self._record(trainer, self._closing)
            checkpoint["callbacks"][self.state_key] = self.state_dict()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, trainer.current_epoch)
        if trainer.is_global_zero and not trainer.fast_dev_run and self.rows:
            self._write()

    def _record(self, trainer: L.Trainer, epoch: int) -> None:
        """The row of ``epoch`` (epochs completed), once."""
        metrics = trainer.callback_metrics
        row = {k: float(metrics[k]) for k in COLUMNS[1:] if k.startswith("train/") and k in metrics}
        if row and (not self.rows or self.rows[-1]["epoch"] < epoch):
            self.rows.append({"epoch": epoch, **row, **self._val})
        self._val = {}

    def state_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]
        self._restored = True

    def _write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "curves.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        fig = curves_figure(self.rows)
        fig.savefig(self.out_dir / "curves.png")
        plt.close(fig)
