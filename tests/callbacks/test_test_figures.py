"""Misclassified examples: images as a grid, reviews as a Markdown table."""

from __future__ import annotations

import torch

from dlexp.callbacks.test_figures import misclassified_markdown


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
