"""At test end: a confusion-matrix image and a grid of misclassified test inputs, written to
TensorBoard and as PNG files in the run directory."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")  # no display on servers and clusters
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from dlexp.data.tokenizer import from_json  # noqa: E402


def confusion_figure(matrix: np.ndarray, class_names: list[str]) -> plt.Figure:
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * n, 1 + 0.6 * n), dpi=100)
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xticks=range(n), yticks=range(n), xticklabels=class_names, yticklabels=class_names,
           xlabel="predicted", ylabel="true", title="test confusion matrix")
    fig.tight_layout()
    return fig


def misclassified_figure(examples: list, class_names: list[str]) -> plt.Figure:
    cols = 8
    rows = max(1, -(-len(examples) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, pred, true) in zip(axes.flat, examples, strict=False):
        ax.imshow(image.float().squeeze(0).numpy(), cmap="gray")
        ax.set_title(f"{class_names[pred]} (true {class_names[true]})", fontsize=7, color="red")
    fig.suptitle("misclassified test examples: predicted (true)", fontsize=9)
    fig.tight_layout()
    return fig


def misclassified_markdown(examples: list, class_names: list[str],
                           decode: Callable[[list[int]], str], width: int = 400) -> str:
    """Misclassified reviews as a Markdown table (TensorBoard's text tab renders it)."""
    rows = ["| predicted | true | text |", "| --- | --- | --- |"]
    for ids, pred, true in examples:
        text = " ".join(decode(ids.tolist()).split()).replace("|", "\\|")
        text = text if len(text) <= width else text[: width - 3] + "..."
        rows.append(f"| {class_names[pred]} | {class_names[true]} | {text} |")
    return "\n".join(rows) + "\n"


def first_layer_figure(net: nn.Module, most: int = 32) -> plt.Figure | None:
    """What the first layer looks for, as the course's "filters visualization": an image
    network's first conv kernels, or its first dense units as square weight maps (the MLP's 784
    weights of a hidden unit, shown 28x28). None for text networks."""
    if getattr(net, "modality", "image") != "image":
        return None
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)), None)
    side = math.isqrt(first.in_features) if isinstance(first, nn.Linear) else 0
    if isinstance(first, nn.Conv2d):
        maps, what = first.weight.detach().float().mean(1), "first conv layer's kernels"
    elif side and side * side == first.in_features:
        maps, what = first.weight.detach().float().view(-1, side, side), "first layer's units"
    else:
        return None
    maps = maps[:most].cpu().numpy()
    cols = min(8, len(maps))
    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.4), dpi=100,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, weights in zip(axes.flat, maps, strict=False):
        bound = float(np.abs(weights).max()) or 1.0
        ax.imshow(weights, cmap="RdBu_r", vmin=-bound, vmax=bound)  # red +, blue -
    fig.suptitle(f"{what} (red: positive weights, blue: negative)", fontsize=9)
    fig.tight_layout()
    return fig


class EvaluationFigures(L.Callback):
    """Renders what the task collected during ``trainer.test``: the confusion matrix, the
    misclassified examples (images as a grid; reviews, decoded with the data's tokenizer, as a
    text table) and the first layer's weights, into the loggers and ``out_dir`` as PNG files.
    Class names and the tokenizer come from the datamodule under test."""

    def __init__(self, out_dir: str | None = None) -> None:
        self.out_dir = out_dir

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        matrix = pl_module.test_confmat.compute().cpu().numpy()  # a collective under DDP
        if trainer.global_rank != 0:
            return
        info = trainer.datamodule.describe() if trainer.datamodule is not None else {}
        names = info.get("class_names") or [str(i) for i in range(len(matrix))]
        wrong = pl_module.misclassified
        texts = [e for e in wrong if e[0].dim() == 1]
        images = [e for e in wrong if e[0].dim() > 1]
        figures = {"test/confusion_matrix": confusion_figure(matrix, names)}
        if images:
            figures["test/misclassified"] = misclassified_figure(images, names)
        net = getattr(pl_module, "net", None)
        first = first_layer_figure(net) if isinstance(net, nn.Module) else None
        if first is not None:
            figures["test/first_layer"] = first
        for tag, fig in figures.items():
            for logger in trainer.loggers:
                if hasattr(logger.experiment, "add_figure"):
                    logger.experiment.add_figure(tag, fig, global_step=trainer.global_step,
                                                 close=False)
            if self.out_dir:
                Path(self.out_dir).mkdir(parents=True, exist_ok=True)
                fig.savefig(Path(self.out_dir) / f"{tag.split('/')[-1]}.png")
            plt.close(fig)
        if texts and "tokenizer" in info:
            decode = from_json(info["tokenizer"]).decode
            self._write_text(trainer, misclassified_markdown(texts, names, decode))

    def _write_text(self, trainer: L.Trainer, table: str) -> None:
        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_text"):
                logger.experiment.add_text("test/misclassified", table, trainer.global_step)
        if self.out_dir:
            Path(self.out_dir).mkdir(parents=True, exist_ok=True)
            (Path(self.out_dir) / "misclassified.md").write_text(table)
