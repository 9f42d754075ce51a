"""Pretrained word vectors: GloVe text format in and out, rows copied into an embedding."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from torch import nn

from dlexp.models.word_vectors import load_word_vectors, read_word_vectors, write_word_vectors

VOCAB = {"<pad>": 0, "<unk>": 1, "good": 2, "bad": 3, "movie": 4}


def test_round_trip_and_only_vocabulary_words_are_read(tmp_path: Path) -> None:
    vectors = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0], [9.0, 9.0, 9.0]])
    path = write_word_vectors(tmp_path / "v.txt", ["good", "bad", "unrelated"], vectors)
    matrix, found = read_word_vectors(path, VOCAB, 3)
    assert found.tolist() == [False, False, True, True, False]
    torch.testing.assert_close(matrix[2:4], vectors[:2])
    assert matrix[4].abs().sum() == 0


def test_gzip_and_word2vec_header_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "v.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("2 2\nmovie 0.5 0.25\ngood 1 1\n")
    matrix, found = read_word_vectors(path, VOCAB, 2)
    assert found.sum() == 2 and matrix[4].tolist() == [0.5, 0.25]


def test_load_into_embedding_keeps_padding_zero_and_others_random(tmp_path: Path) -> None:
    path = write_word_vectors(tmp_path / "v.txt", ["<pad>", "good"],
                              torch.tensor([[5.0, 5.0], [1.0, -1.0]]))
    torch.manual_seed(0)
    emb = nn.Embedding(len(VOCAB), 2, padding_idx=0)
    before = emb.weight.detach().clone()
    assert load_word_vectors(emb, path, VOCAB) == 1
    assert emb.weight[0].abs().sum() == 0  # the padding row is never overwritten
    assert emb.weight[2].tolist() == [1.0, -1.0]
    torch.testing.assert_close(emb.weight[3:], before[3:])


def test_dimension_mismatch_and_missing_file_are_clear(tmp_path: Path) -> None:
    path = write_word_vectors(tmp_path / "v.txt", ["good"], torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"has 4 values but the embedding has 3; set "
                                         r"model.embedding_dim=4"):
        read_word_vectors(path, VOCAB, 3)
    with pytest.raises(ValueError, match="word vectors file not found"):
        read_word_vectors(tmp_path / "nope.txt", VOCAB, 3)
