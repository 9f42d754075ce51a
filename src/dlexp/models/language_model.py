"""The next-token head of the language-model stage: an adaptive softmax (Grave et al. 2017)
whose output words are the input embedding's rows (tied weights, Press & Wolf 2017).

``torch.nn.AdaptiveLogSoftmaxWithLoss`` splits the vocabulary at ``cutoffs``: the frequent
words and one entry per rare cluster share the head; a rare cluster's scores are computed only
for the tokens whose target lies in it, so the vocabulary no longer dominates a step's cost.
The head and each cluster's output layer read their weights from the embedding (the tokenizers
number words by frequency, so the shortlist is the most frequent ones). The embedding is held
by reference, not as a submodule: its weights are saved once, with the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class TiedRows(nn.Module):
    """A linear layer whose weight is rows ``[start, stop)`` of ``embedding.weight``, plus
    ``extra`` rows of its own (the head's cluster entries)."""

    def __init__(self, embedding: nn.Embedding, start: int, stop: int, extra: int = 0) -> None:
        super().__init__()
        self._embedding = [embedding]  # a list: not registered, not saved twice
        self.start, self.stop = start, stop
        dim = embedding.embedding_dim
        self.extra = nn.Parameter(torch.randn(extra, dim) * dim**-0.5) if extra else None
        self.bias = nn.Parameter(torch.zeros(stop - start + extra))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self._embedding[0].weight[self.start:self.stop]
        if self.extra is not None:
            weight = torch.cat([weight, self.extra])
        return F.linear(x, weight, self.bias)


class TiedAdaptiveSoftmax(nn.Module):
    """``forward(hidden [N, H], targets [N])`` -> mean negative log-likelihood (nats). A
    projection maps the encoder's ``hidden_size`` to the embedding's width when they differ."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int, cutoffs: Sequence[int]) -> None:
        super().__init__()
        vocab, dim = embedding.num_embeddings, embedding.embedding_dim
        cuts = sorted(c for c in cutoffs if 0 < c < vocab - 1)
        if not cuts:
            raise ValueError(f"method.task.cutoffs {list(cutoffs)} leave no cluster in a "
                             f"vocabulary of {vocab}: give at least one cutoff below {vocab - 1}")
        self.cutoffs = cuts
        self.project = nn.Linear(hidden_size, dim) if hidden_size != dim else nn.Identity()
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(dim, vocab, cuts, div_value=1.0)
        # the stock layers (random, untied) give way to views of the embedding
        bounds = [*cuts, vocab]
        self.softmax.head = TiedRows(embedding, 0, cuts[0], extra=len(cuts))
        self.softmax.tail = nn.ModuleList(TiedRows(embedding, lo, hi)
                                          for lo, hi in zip(bounds, bounds[1:], strict=False))

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        projected = self.project(hidden).float()
        # in float32 whatever the precision: under bf16 autocast the clusters' scores come out
        # bf16 and AdaptiveLogSoftmaxWithLoss's float32 output refuses them (index_copy_)
        with torch.autocast(hidden.device.type, enabled=False):
            return self.softmax(projected, targets).loss
