"""At test end: a confusion-matrix image and a grid of misclassified test inputs, written to
TensorBoard and as PNG files in the run directory. A multi-label task gets a per-label
confusion figure instead (no grid: a label set is rarely all right or all wrong)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")  # no display on servers and clusters
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from dlexp.data.tokenizer import from_json  # noqa: E402

NUMBERED_MAX = 20  # classes up to which each cell shows its count; more would not be read
NAME_CHARS = 16  # class names are cut to this in the confusion matrix, to 10 under images


def short_name(name: str, width: int = NAME_CHARS) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def confusion_figure(matrix: np.ndarray, class_names: list[str]) -> plt.Figure:
    """Rows: true classes, columns: predicted, shaded by the fraction of the true class. Up to
    :data:`NUMBERED_MAX` classes each cell shows its count; beyond, a colour bar gives the
    scale, the names get smaller and the figure grows more slowly."""
    n = len(class_names)
    numbered = n <= NUMBERED_MAX
    side = 1 + 0.6 * n if numbered else min(13 + 0.12 * (n - NUMBERED_MAX), 24)
    fig, ax = plt.subplots(figsize=(side, side), dpi=100)
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    shading = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if numbered:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    else:
        fig.colorbar(shading, ax=ax, fraction=0.04, pad=0.02, label="fraction of the true class")
    names = [short_name(str(c)) for c in class_names]
    size = 8 if numbered else max(3.0, 8 - (n - NUMBERED_MAX) / 16)
    turn = 90 if not numbered else (45 if max(map(len, names), default=0) > 3 else 0)
    ax.set_xticks(range(n), names, fontsize=size, rotation=turn,
                  ha="right" if turn == 45 else "center", rotation_mode="anchor" if turn == 45
                  else "default")
    ax.set_yticks(range(n), names, fontsize=size)
    ax.set(xlabel="predicted", ylabel="true", title="test confusion matrix"
           + ("" if numbered else f" ({n} classes, shaded by row)"))
    fig.tight_layout()
    return fig


LABEL_COLUMNS = ("true neg.", "false pos.", "false neg.", "true pos.")


def label_confusion_figure(matrices: np.ndarray, label_names: list[str]) -> plt.Figure:
    """Multi-label: one row per label, its test counts of true negatives, false positives,
    false negatives and true positives (``matrices``: torchmetrics' (C, 2, 2)), shaded by the
    fraction of the label's row."""
    counts = matrices.reshape(len(matrices), 4)  # [[tn, fp], [fn, tp]] row by row
    n = len(label_names)
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.35 * min(n, 60)), dpi=100)
    norm = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    if n <= 60:
        for i in range(n):
            for j in range(4):
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(4), LABEL_COLUMNS, fontsize=8)
    ax.set_yticks(range(n), [short_name(str(c)) for c in label_names],
                  fontsize=8 if n <= 60 else 4)
    ax.set(title="test confusion per label")
    fig.tight_layout()
    return fig


def mosaic(tiles: np.ndarray, cols: int, pad: int = 1, top: int = 0, fill: float = 1.0
           ) -> np.ndarray:
    """``tiles`` (N, H, W) or (N, H, W, 3) as one image, ``cols`` to a row, ``pad`` pixels of
    ``fill`` around each and ``top`` more above each (room for its label). One image on one axes
    draws many times faster than an axes per tile."""
    n, h, w = tiles.shape[:3]
    rows = -(-n // cols)
    out = np.full((rows * (top + h + pad) + pad, cols * (w + pad) + pad, *tiles.shape[3:]),
                  fill, dtype=np.float32)
    for i, tile in enumerate(tiles):
        y, x = tile_origin(i, cols, h, w, pad, top)
        out[y:y + h, x:x + w] = tile
    return out


def tile_origin(i: int, cols: int, h: int, w: int, pad: int, top: int) -> tuple[int, int]:
    r, c = divmod(i, cols)
    return pad + top + r * (top + h + pad), pad + c * (w + pad)


def tiled_figure(tiles: np.ndarray, cols: int, title: str, inches: tuple[float, float],
                 top: int = 0, **imshow: object) -> tuple[plt.Figure, plt.Axes]:
    rows = -(-len(tiles) // cols)
    fig = plt.figure(figsize=(cols * inches[0], rows * inches[1] + 0.4), dpi=100)
    ax = fig.add_axes((0.005, 0.005, 0.99, 1 - 0.4 / (rows * inches[1] + 0.4) - 0.01))
    ax.imshow(mosaic(tiles, cols, top=top, fill=imshow.pop("fill", 1.0)), aspect="auto",
              interpolation="nearest", **imshow)
    ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig, ax


def unit_range(images: np.ndarray) -> np.ndarray:
    """Each image stretched to [0, 1] on its own, as imshow would scale it alone."""
    flat = images.reshape(len(images), -1)
    low, high = flat.min(1), flat.max(1)
    scale = np.where(high > low, high - low, 1.0)
    shape = (-1,) + (1,) * (images.ndim - 1)
    return (images - low.reshape(shape)) / scale.reshape(shape)


def misclassified_figure(examples: list, class_names: list[str]) -> plt.Figure:
    images = np.stack([image.float().numpy() for image, _, _ in examples])  # (N, C, H, W)
    rgb = images.shape[1] == 3
    tiles = unit_range(images.transpose(0, 2, 3, 1) if rgb else images[:, 0])
    cols, (h, w), top = min(8, len(tiles)), tiles.shape[1:3], max(4, images.shape[2] // 3)
    fig, ax = tiled_figure(tiles, cols, "misclassified test examples: predicted (true)",
                           (1.2, 1.4), top=top, **({} if rgb else {"cmap": "gray", "vmin": 0,
                                                                    "vmax": 1}))
    for i, (_, pred, true) in enumerate(examples):
        y, x = tile_origin(i, cols, h, w, 1, top)
        label = f"{short_name(class_names[pred], 10)} (true {short_name(class_names[true], 10)})"
        ax.text(x + w / 2, y - 1, label, fontsize=7 if len(label) <= 16 else 5, color="red",
                ha="center", va="bottom")
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
    bound = np.abs(maps).reshape(len(maps), -1).max(1).reshape(-1, 1, 1)
    maps = maps / np.where(bound > 0, bound, 1.0)  # each map on its own scale, 0 stays white
    fig, _ = tiled_figure(maps, min(8, len(maps)),
                          f"{what} (red: positive weights, blue: negative)", (1.1, 1.1),
                          cmap="RdBu_r", vmin=-1, vmax=1, fill=0.0)  # red +, blue -
    return fig


def render(fig: plt.Figure) -> np.ndarray:
    """The figure's pixels (H, W, 3), drawn once for both the PNG file and TensorBoard."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


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
        figures = {"test/confusion_matrix": label_confusion_figure(matrix, names)
                   if matrix.ndim == 3 else confusion_figure(matrix, names)}
        if images:
            figures["test/misclassified"] = misclassified_figure(images, names)
        net = getattr(pl_module, "net", None)
        first = first_layer_figure(net) if isinstance(net, nn.Module) else None
        if first is not None:
            figures["test/first_layer"] = first
        for tag, fig in figures.items():
            pixels = render(fig)
            plt.close(fig)
            for logger in trainer.loggers:
                if hasattr(logger.experiment, "add_image"):
                    logger.experiment.add_image(tag, pixels, global_step=trainer.global_step,
                                                dataformats="HWC")
            if self.out_dir:
                Path(self.out_dir).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(Path(self.out_dir) / f"{tag.split('/')[-1]}.png")
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
