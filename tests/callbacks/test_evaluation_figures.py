"""The test figures: misclassified images as one grid, reviews as a Markdown table, the first
layer's weights as one mosaic."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from dlexp.callbacks.evaluation_figures import (
    misclassified_figure,
    misclassified_markdown,
    mosaic,
    render,
    tile_origin,
)


def test_reviews_become_a_markdown_table_with_escaped_pipes_and_cut_text() -> None:
    words = {1: "great", 2: "a|b", 3: "word"}

    def decode(ids: list[int]) -> str:
        return " ".join(words[i] for i in ids)

    examples = [(torch.tensor([1, 2]), 0, 1), (torch.tensor([3] * 200), 1, 0)]
    table = misclassified_markdown(examples, ["negative", "positive"], decode, width=40)
    lines = table.splitlines()
    assert lines[0] == "| predicted | true | text |"
    assert lines[2] == "| negative | positive | great a\\|b |"
    assert lines[3].startswith("| positive | negative | word word") and lines[3].endswith("... |")
    assert len(lines[3].split(" | ")[-1]) <= 40 + 2


def test_first_layer_figure_shows_what_the_first_layer_looks_for() -> None:
    from dlexp.callbacks.evaluation_figures import first_layer_figure
    from dlexp.models.cnn import CNN
    from dlexp.models.mlp import MLP
    from dlexp.models.rnn import RNNClassifier

    mlp = first_layer_figure(MLP(hidden=(40, 10)))
    (image,) = [im for ax in mlp.axes for im in ax.images]
    assert image.get_array().shape == (4 * 29 + 1, 8 * 29 + 1)  # 32 of 40 units, 28x28, 8 a row
    cnn = first_layer_figure(CNN())
    (image,) = [im for ax in cnn.axes for im in ax.images]
    assert image.get_array().shape == (4 * 4 + 1, 8 * 4 + 1)  # 32 kernels of 3x3
    assert image.get_array().min() >= -1 and image.get_array().max() <= 1  # each on its scale
    assert first_layer_figure(RNNClassifier(vocab_size=50)) is None  # text: nothing to draw
    plt.close("all")


def test_mosaic_puts_each_tile_in_its_cell_with_room_for_a_label() -> None:
    tiles = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    out = mosaic(tiles, cols=2, pad=1, top=2, fill=-1)
    assert out.shape == (3 * (2 + 2 + 1) + 1, 2 * (3 + 1) + 1)
    for i, tile in enumerate(tiles):
        y, x = tile_origin(i, 2, 2, 3, 1, 2)
        assert (out[y:y + 2, x:x + 3] == tile).all()
    assert (out == -1).sum() == out.size - tiles.size  # the rest is padding
    rgb = mosaic(np.zeros((3, 4, 4, 3)), cols=8)
    assert rgb.shape == (6, 8 * 5 + 1, 3)  # a full row of 8 cells


def test_misclassified_images_are_one_grid_with_a_label_each() -> None:
    gray = [(torch.rand(1, 28, 28) * 255, i % 3, (i + 1) % 3) for i in range(10)]
    fig = misclassified_figure(gray, ["a", "b", "c"])
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts][:2] == ["a (true b)", "b (true c)"]
    assert len(ax.texts) == 10 and ax.images[0].get_array().max() <= 1
    color = misclassified_figure([(torch.rand(3, 16, 16), 0, 1)] * 3, ["a", "b"])
    assert color.axes[0].images[0].get_array().shape[-1] == 3  # RGB inputs stay in colour
    pixels = render(color)
    assert pixels.dtype == np.uint8 and pixels.shape[2] == 3 and pixels.std() > 0
    plt.close("all")


def test_confusion_matrix_shows_class_names_and_numbers_for_few_classes() -> None:
    from dlexp.callbacks.evaluation_figures import confusion_figure

    names = ["cat", "dog", "a very long class name indeed"]
    fig = confusion_figure(np.array([[5, 1, 0], [2, 3, 0], [0, 0, 4]]), names)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "a very long cla…"]
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["cat", "dog"]
    assert [t.get_text() for t in ax.texts] == ["5", "1", "0", "2", "3", "0", "0", "0", "4"]
    plt.close("all")


def test_confusion_matrix_of_many_classes_stays_readable() -> None:
    from dlexp.callbacks.evaluation_figures import confusion_figure

    names = [f"species_{i:03d}" for i in range(120)]
    fig = confusion_figure(np.eye(120, dtype=int) * 3, names)
    ax, bar = fig.axes  # a colour bar in place of 14400 numbers
    assert len(ax.texts) == 0 and bar.get_ylabel() == "fraction of the true class"
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == names and labels[0].get_fontsize() == 3
    assert fig.get_size_inches()[0] <= 24
    plt.close("all")


def test_figures_take_the_class_names_of_the_data(tmp_path: Path) -> None:
    """The callback names the classes as the datamodule's describe() does."""
    from types import SimpleNamespace

    from dlexp.callbacks import evaluation_figures as figures

    seen = []
    draw = figures.confusion_figure

    def spy(matrix: np.ndarray, names: list[str]) -> plt.Figure:
        seen.append(names)
        return draw(matrix, names)

    names = ["ant", "bee", "wasp"]
    datamodule = SimpleNamespace(describe=lambda: {"class_names": names})
    trainer = SimpleNamespace(global_rank=0, datamodule=datamodule, loggers=[], global_step=0)
    module = SimpleNamespace(test_confmat=SimpleNamespace(compute=lambda: torch.eye(3)),
                             misclassified=[(torch.rand(1, 8, 8), 2, 0)])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "confusion_figure", spy)
        figures.EvaluationFigures(str(tmp_path)).on_test_end(trainer, module)
    assert seen == [names]
    assert (tmp_path / "confusion_matrix.png").is_file()
    assert (tmp_path / "misclassified.png").is_file()
    plt.close("all")
