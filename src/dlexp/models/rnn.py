"""Recurrent text classifier: embedding -> stacked (bi)RNN/GRU/LSTM -> pooling over time -> head.

Each layer and direction is its own one-layer cell, so both execution modes share one set of
weights (a checkpoint trained packed also runs unpacked):

- ``packed=False`` (default, fast on CPU): the forward direction runs over the padded batch;
  right padding cannot reach the valid steps of a causal pass. The backward direction runs over
  each sequence reversed *within its length*, so it too starts at the last real token. Outputs
  at valid steps therefore do not depend on the padding, with no packing cost.
- ``packed=True``: ``pack_padded_sequence`` around each cell, PyTorch's classic route.

Pooling (``last``, ``max``, ``mean``, or ``concat``: the three side by side, ULMFiT's concat
pooling) masks the padding out. :meth:`RNNClassifier.run_stream` runs the embedding and the
forward cells over a token stream with a carried state: the language-model stage
(``method=language_model``) pretrains them that way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlexp.models.layers import check_dropout, dense_block

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
POOLINGS = ("last", "max", "mean", "concat")
State = list[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]  # one per layer


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``lengths[b]`` steps of ``x`` [B, T, ...]; padding stays put.
    Applying it twice gives ``x`` back."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    last = lengths.to(x.device).unsqueeze(1) - 1
    idx = torch.where(steps <= last, last - steps, steps)
    idx = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


def padding_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, T] boolean mask, True on real tokens."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


MAX_LAYERS = 32  # stacked recurrent layers: thousands of them fill any machine's memory

class RNNClassifier(nn.Module):
    """Sentiment-style classifier over token ids. ``forward(ids, lengths)`` returns logits."""

    modality = "text"

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        pad_idx: int = 0,
        embedding_dim: int = 128,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        pooling: str = "max",
        dense: Sequence[int] = (),
        packed: bool = False,
        freeze_embedding: bool = False,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        for name, value in (("vocab_size", vocab_size), ("embedding_dim", embedding_dim),
                            ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_layers > MAX_LAYERS:
            raise ValueError(f"num_layers must be at most {MAX_LAYERS}, got {num_layers} "
                             "(deep recurrent stacks stop training well after a few layers)")
        check_dropout(dropout)
        check_dropout(embedding_dropout, "embedding_dropout")
        self.pad_idx, self.pooling, self.packed = pad_idx, pooling, packed
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_idx)
        self.embedding.weight.requires_grad_(not freeze_embedding)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        directions = 2 if bidirectional else 1
        self.layers = nn.ModuleList()
        width = embedding_dim
        for _ in range(num_layers):
            self.layers.append(nn.ModuleList(
                CELLS[cell](width, hidden_size, batch_first=True) for _ in range(directions)))
            width = hidden_size * directions
        if pooling == "concat":
            width *= 3
        self.dropout = nn.Dropout(dropout)
        head: list[nn.Module] = []
        for size in dense:
            head += dense_block(width, size, "relu", dropout)
            width = size
        self.classifier = nn.Sequential(*head)
        self.head = nn.Linear(width, num_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.clamp(min=1, max=ids.shape[1])
        x = self.embedding_dropout(self.embedding(ids))
        for i, directions in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            x = torch.cat([self._run(rnn, x, lengths, backward=d == 1)
                           for d, rnn in enumerate(directions)], dim=-1)
        return self.head(self.classifier(self.dropout(self._pool(x, lengths))))

    def run_stream(self, ids: torch.Tensor, state: State | None = None, direction: int = 0
                   ) -> tuple[torch.Tensor, State]:
        """Embedding and the ``direction``'s cells (0: forward, 1: backward, fed a reversed
        stream) over ids [B, T] with no padding (a slice of a token stream), starting from
        ``state`` (None: zeros): outputs [B, T, H] and the new state, for the next slice. A
        direction has a next-token reading on its own only when no layer mixes both: one
        direction, or one bidirectional layer."""
        if self.bidirectional and len(self.layers) > 1:
            raise ValueError("a stacked bidirectional network's upper layers read both "
                             "directions: run_stream needs bidirectional=false or num_layers=1")
        if direction >= len(self.layers[0]):
            raise ValueError(f"this network has no direction {direction}")
        x = self.embedding_dropout(self.embedding(ids))
        new: State = []
        for i, cells in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            x, h = cells[direction](x, None if state is None else state[i])
            new.append(h)
        return self.dropout(x), new

    def _run(self, rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
             backward: bool) -> torch.Tensor:
        if backward:
            x = reverse_within_length(x, lengths)
        if self.packed:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            out = pad_packed_sequence(rnn(packed)[0], batch_first=True,
                                      total_length=x.shape[1])[0]
        else:
            out = rnn(x)[0]
        return reverse_within_length(out, lengths) if backward else out

    def _pool(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, T, H] -> [B, H] over the real tokens only."""
        if self.pooling == "concat":
            return torch.cat([self._pool_as(p, x, lengths) for p in ("last", "max", "mean")], -1)
        return self._pool_as(self.pooling, x, lengths)

    def _pool_as(self, pooling: str, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if pooling == "last":
            # forward half: the output at the last real token; backward half: at step 0,
            # where the reversed pass has read the whole sequence
            half = x.shape[-1] // len(self.layers[-1])
            at_end = x.gather(1, (lengths.to(x.device) - 1).view(-1, 1, 1)
                              .expand(-1, 1, x.shape[-1])).squeeze(1)
            return torch.cat([at_end[:, :half], x[:, 0, half:]], dim=-1)
        mask = padding_mask(lengths.to(x.device), x.shape[1]).unsqueeze(-1)
        if pooling == "max":
            return x.masked_fill(~mask, torch.finfo(x.dtype).min).amax(1)
        return (x * mask).sum(1) / lengths.to(x.device, x.dtype).unsqueeze(1)
