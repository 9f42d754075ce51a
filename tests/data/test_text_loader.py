"""BucketSampler and TextBatchLoader: bucketing, seeded order, DDP shards, the batch contract."""

from __future__ import annotations

import pytest
import torch
from test_token_store import _random_lengths, _seq, _store

from dlexp.data.text_loader import BucketSampler, TextBatchLoader


def _padding(sampler: BucketSampler) -> float:
    cells = sum(len(b) * int(sampler.lengths[b].max()) for b in sampler.batches())
    return 1 - int(sampler.lengths.sum()) / cells


@pytest.mark.parametrize("bucket", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_once_per_epoch(bucket: bool, shuffle: bool) -> None:
    sampler = BucketSampler(torch.tensor(_random_lengths(301)), 16, shuffle, bucket,
                            chunk_batches=4)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        assert len(batches) == len(sampler) == 19
        assert sorted(torch.cat(batches).tolist()) == list(range(301))


def test_bucketing_reduces_padding() -> None:
    lengths = torch.tensor(_random_lengths(2000))
    plain = _padding(BucketSampler(lengths, 32, True, bucket=False))
    bucketed = _padding(BucketSampler(lengths, 32, True, bucket=True, chunk_batches=20))
    assert plain > 0.3 and bucketed < 0.1


def test_bucketed_order_is_seeded_per_epoch() -> None:
    lengths = torch.tensor(_random_lengths(500))

    def order(epoch: int, seed: int = 3) -> list[int]:
        sampler = BucketSampler(lengths, 16, True, True, seed=seed, chunk_batches=5)
        sampler.set_epoch(epoch)
        return torch.cat(sampler.batches()).tolist()

    assert order(0) == order(0) and order(1) == order(1)
    assert order(0) != order(1) and order(0) != order(0, seed=4)
    # batch order is shuffled: lengths do not rise steadily through the epoch
    firsts = [int(lengths[b].max()) for b in BucketSampler(lengths, 16, True, True).batches()]
    assert firsts != sorted(firsts)


def test_eval_sorting_sorts_the_whole_shard() -> None:
    lengths = torch.tensor(_random_lengths(100))
    sampler = BucketSampler(lengths, 7, shuffle=False, bucket=True, chunk_batches=None)
    seen = lengths[torch.cat(sampler.batches())]
    assert torch.equal(seen, lengths.sort(stable=True).values)


@pytest.mark.parametrize("bucket", [False, True])
def test_ddp_shards_are_disjoint_and_cover(bucket: bool) -> None:
    lengths = torch.tensor(_random_lengths(200))
    shards = []
    for rank in (0, 1):
        sampler = BucketSampler(lengths, 10, True, bucket, seed=1, rank=rank, world_size=2)
        sampler.set_epoch(2)
        shards.append(torch.cat(sampler.batches()).tolist())
    assert len(shards[0]) == len(shards[1]) == 100
    assert set(shards[0]).isdisjoint(shards[1]) and set(shards[0]) | set(shards[1]) == \
        set(range(200))


def test_ddp_shards_pad_to_equal_length() -> None:
    lengths = torch.tensor(_random_lengths(7))
    counts = [len(torch.cat(BucketSampler(lengths, 2, True, True, rank=r, world_size=2)
                            .batches())) for r in (0, 1)]
    assert counts == [4, 4]


def test_loader_batch_contract() -> None:
    lengths = _random_lengths(50)
    store, labels = _store(lengths), torch.arange(50)
    loader = TextBatchLoader(store, labels, 8, shuffle=True, bucket=True)
    assert loader.batch_sampler is None and hasattr(loader.sampler, "set_epoch")
    seen = []
    for (ids, lens), y in loader:
        assert ids.dtype == lens.dtype == y.dtype == torch.int64
        assert ids.shape == (len(y), int(lens.max())) and (lens >= 1).all()
        for row, n, i in zip(ids, lens, y, strict=True):
            assert row[:n].tolist() == _seq(store, int(i))  # labels travel with their review
            assert (row[n:] == 0).all()
        seen += y.tolist()
    assert sorted(seen) == list(range(50)) and len(loader) == 7
    assert 0 <= loader.padding_fraction() < 0.5


def test_loader_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="3 sequences but 2 labels"):
        TextBatchLoader(_store([1, 2, 3]), torch.zeros(2), 2)
