"""Batches of variable-length token sequences: padded per batch, optionally length-bucketed.

Reviews live in one flat int32 tensor with offsets (no per-sample Python objects); a batch is
one vectorised gather. Padding only to the longest review *in the batch* and grouping reviews
of similar length (bucketing) keeps the LSTM from running over padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from dlexp.data.loader import EpochSampler

TRUNCATE = ("head", "head_tail")
TextBatch = tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TokenStore:
    """Ragged sequences: sequence ``i`` is ``flat[offsets[i]:offsets[i + 1]]``."""

    flat: torch.Tensor     # int32 token ids, all sequences back to back
    offsets: torch.Tensor  # int64, len(self) + 1 entries, offsets[0] == 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @cached_property  # asked for every batch
    def lengths(self) -> torch.Tensor:
        return self.offsets.diff()

    def take(self, idx: torch.Tensor) -> TokenStore:
        """Sequences ``idx``, in that order."""
        flat, off = self.flat.numpy(), self.offsets.tolist()
        parts = [flat[off[i]:off[i + 1]] for i in idx.tolist()]  # numpy views: cheap slices
        tokens = torch.from_numpy(np.concatenate(parts)) if parts else self.flat[:0]
        return TokenStore(tokens, offsets_of(self.lengths[idx]))

    @staticmethod
    def cat(stores: list[TokenStore]) -> TokenStore:
        return TokenStore(torch.cat([s.flat for s in stores]),
                          offsets_of(torch.cat([s.lengths for s in stores])))

    def truncate(self, max_len: int | None, mode: str = "head") -> TokenStore:
        """Keep at most ``max_len`` tokens: the first ones (``head``), or the first quarter and
        the last three quarters (``head_tail``: a review's verdict is often at its end, and
        Sun et al. 2019 found this split best on IMDB)."""
        if mode not in TRUNCATE:
            raise ValueError(f"data.truncate must be one of {', '.join(TRUNCATE)}, got {mode!r}")
        if max_len is not None and max_len < 1:
            raise ValueError(f"data.max_len must be >= 1 or null, got {max_len}")
        lengths = self.lengths
        over = (lengths > max_len).nonzero().squeeze(1) if max_len else lengths[:0]
        if len(over) == 0:
            return self
        head = max_len // 4 if mode == "head_tail" else max_len
        # mark each dropped middle [start, end) with +1/-1; a running sum > 0 means "inside"
        start = self.offsets[over] + head
        end = self.offsets[over + 1] - (max_len - head)
        marks = torch.zeros(len(self.flat) + 1, dtype=torch.int32)
        marks.index_add_(0, start, torch.ones_like(start, dtype=torch.int32))
        marks.index_add_(0, end, torch.full_like(end, -1, dtype=torch.int32))
        keep = marks.cumsum_(0)[:-1] == 0
        return TokenStore(self.flat[keep], offsets_of(lengths.clamp(max=max_len)))

    def pad(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids [B, T] padded with 0 to the batch's longest sequence, and lengths [B]."""
        lengths = self.lengths[idx]
        steps = torch.arange(int(lengths.max()) if len(idx) else 0)
        src = (self.offsets[idx].unsqueeze(1) + steps).clamp_(max=max(len(self.flat) - 1, 0))
        # index_select: ~30x faster than flat[src] advanced indexing here (measured)
        ids = self.flat.index_select(0, src.flatten()).view(src.shape).long() if len(self.flat) \
            else src.new_zeros(src.shape)
        return ids.masked_fill_(steps >= lengths.unsqueeze(1), 0), lengths


def offsets_of(lengths: torch.Tensor) -> torch.Tensor:
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    torch.cumsum(lengths, 0, out=offsets[1:])
    return offsets


class BucketSampler:
    """Batches of indices for one epoch. The epoch's (sharded, shuffled) order comes from
    :class:`EpochSampler`; with ``bucket``, each chunk of ``chunk_batches`` batches is sorted by
    length before it is cut, and the batch order is shuffled again so lengths don't trend
    through the epoch. ``chunk_batches=None`` sorts the whole shard (for evaluation)."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, shuffle: bool, bucket: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 chunk_batches: int | None = 50) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths, self.batch_size, self.bucket = lengths, batch_size, bucket
        self.chunk_batches, self.seed = chunk_batches, seed
        self.order = EpochSampler(len(lengths), shuffle, seed, rank, world_size)

    @property
    def epoch(self) -> int:
        return self.order.epoch

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def batches(self) -> list[torch.Tensor]:
        idx = self.order.indices()
        if not self.bucket:
            return list(idx.split(self.batch_size))
        chunk = self.chunk_batches * self.batch_size if self.chunk_batches else max(len(idx), 1)
        idx = torch.cat([c[self.lengths[c].argsort(stable=True)] for c in idx.split(chunk)]
                        or [idx])
        batches = list(idx.split(self.batch_size))
        if self.order.shuffle:  # a different stream from the order's, same seed and epoch
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 7_919)
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g)]
        return batches


class TextBatchLoader:
    """Yields ``((ids, lengths), labels)`` batches, the framework's text batch contract."""

    def __init__(self, store: TokenStore, labels: torch.Tensor, batch_size: int,
                 shuffle: bool = False, bucket: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1, chunk_batches: int | None = 50,
                 pin_memory: bool = False) -> None:
        if len(store) != len(labels):
            raise ValueError(f"{len(store)} sequences but {len(labels)} labels")
        self.store, self.labels, self.pin_memory = store, labels, pin_memory
        self.sampler = BucketSampler(store.lengths, batch_size, shuffle, bucket, seed, rank,
                                     world_size, chunk_batches)
        self.batch_sampler = None  # Lightning looks for it next to ``sampler``

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[TextBatch]:
        for idx in self.sampler.batches():
            ids, lengths = self.store.pad(idx)
            if self.pin_memory:
                ids = ids.pin_memory()
            yield (ids, lengths), self.labels[idx]

    def padding_fraction(self) -> float:
        """Share of the padded [B, T] cells that are padding over one epoch (a diagnostic)."""
        cells = real = 0
        for idx in self.sampler.batches():
            lengths = self.store.lengths[idx]
            cells += len(idx) * int(lengths.max())
            real += int(lengths.sum())
        return 1 - real / max(cells, 1)
