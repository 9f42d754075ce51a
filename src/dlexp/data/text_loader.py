"""Batches of variable-length token sequences: padded per batch, optionally length-bucketed.

Reviews live in a :class:`~dlexp.data.token_store.TokenStore`; a batch is one vectorised gather.
Padding only to the longest review *in the batch* and grouping reviews
of similar length (bucketing) keeps the LSTM from running over padding.
"""

from __future__ import annotations

import torch

from dlexp.data.tensor_loader import EpochSampler, ResumableBatches
from dlexp.data.token_store import TokenStore

TextBatch = tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]


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

    @property
    def weights(self) -> torch.Tensor | None:
        return self.order.weights

    @weights.setter
    def weights(self, weights: torch.Tensor | None) -> None:  # balanced draws: EpochSampler
        self.order.weights = weights

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


class TextBatchLoader(ResumableBatches):
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

    def index_batches(self) -> list[torch.Tensor]:
        return self.sampler.batches()

    def make_batch(self, idx: torch.Tensor) -> TextBatch:
        ids, lengths = self.store.pad(idx)
        if self.pin_memory:
            ids = ids.pin_memory()
        return (ids, lengths), self.labels[idx]

    def padding_fraction(self) -> float:
        """Share of the padded [B, T] cells that are padding over one epoch (a diagnostic)."""
        cells = real = 0
        for idx in self.sampler.batches():
            lengths = self.store.lengths[idx]
            cells += len(idx) * int(lengths.max())
            real += int(lengths.sum())
        return 1 - real / max(cells, 1)
