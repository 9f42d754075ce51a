"""Pretrained word vectors (GloVe's text format: ``word v1 v2 ... vd`` per line) for an
embedding layer: the text side of transfer learning."""

from __future__ import annotations

import gzip
from pathlib import Path

import torch
from torch import nn


def read_word_vectors(path: str | Path, vocab: dict[str, int], dim: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows for the words of ``vocab`` (word -> row) found in the file: ``(matrix [V, dim],
    found [V] bool)``. Streams the file and keeps only the vocabulary's words, so a 1 GB
    GloVe file needs no more memory than the embedding."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"word vectors file not found: {path} (model.vectors)")
    matrix = torch.zeros(len(vocab), dim)
    found = torch.zeros(len(vocab), dtype=torch.bool)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            word, _, rest = line.rstrip("\n").partition(" ")
            row = vocab.get(word)
            if row is None or found[row]:
                continue
            values = rest.split()
            if len(values) != dim:
                if number == 1 and len(values) == 1:  # word2vec's "count dim" header line
                    continue
                raise ValueError(f"{path}:{number} has {len(values)} values but the embedding "
                                 f"has {dim}; set model.embedding_dim={len(values)}")
            matrix[row] = torch.tensor([float(v) for v in values])
            found[row] = True
    return matrix, found


def load_word_vectors(embedding: nn.Embedding, path: str | Path, vocab: dict[str, int]) -> int:
    """Copy the file's vectors into ``embedding``'s rows; the rest keep their random init
    (the padding row stays zero). Returns how many words were found."""
    if len(vocab) > embedding.num_embeddings:
        raise ValueError(f"vocabulary of {len(vocab)} words for an embedding of "
                         f"{embedding.num_embeddings} rows")
    matrix, found = read_word_vectors(path, vocab, embedding.embedding_dim)
    if embedding.padding_idx is not None and embedding.padding_idx < len(found):
        found[embedding.padding_idx] = False
    with torch.no_grad():
        rows = found.nonzero().squeeze(1)
        embedding.weight[rows] = matrix[rows]
    return int(found.sum())


def write_word_vectors(path: str | Path, words: list[str], vectors: torch.Tensor) -> Path:
    """Write vectors in GloVe's text format (what :func:`read_word_vectors` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for word, row in zip(words, vectors.tolist(), strict=True):
            f.write(word + " " + " ".join(f"{v:.5f}" for v in row) + "\n")
    return path
