"""Misclassified examples: images as a grid, reviews as a Markdown table."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from dlexp.callbacks.evaluation_figures import misclassified_markdown


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
    shown = [ax.images[0].get_array().shape for ax in mlp.axes if ax.images]
    assert shown == [(28, 28)] * 32  # 32 of the 40 hidden units, as 28x28 weight maps
    cnn = first_layer_figure(CNN())
    assert [ax.images[0].get_array().shape for ax in cnn.axes if ax.images] == [(3, 3)] * 32
    assert first_layer_figure(RNNClassifier(vocab_size=50)) is None  # text: nothing to draw
    plt.close("all")
