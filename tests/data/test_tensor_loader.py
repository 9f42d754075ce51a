"""In-memory batch loader: epoch coverage, seeded order, DDP sharding and lengths."""

from __future__ import annotations

import pytest
import torch

from dlexp.data.tensor_loader import EpochSampler, TensorBatchLoader


def _loader(n: int = 103, **kwargs) -> TensorBatchLoader:
    x = torch.arange(n).float().unsqueeze(1) * 10
    y = torch.arange(n)
    return TensorBatchLoader((x, y), **{"batch_size": 10, **kwargs})


def _epoch(loader: TensorBatchLoader) -> torch.Tensor:
    return torch.cat([y for _, y in loader])


@pytest.mark.parametrize("shuffle", [False, True])
def test_epoch_covers_every_index_once(shuffle: bool) -> None:
    loader = _loader(shuffle=shuffle)
    seen = _epoch(loader)
    assert sorted(seen.tolist()) == list(range(103))
    if not shuffle:
        assert seen.tolist() == list(range(103))
    else:
        assert seen.tolist() != list(range(103))


def test_batches_keep_tensors_aligned() -> None:
    for x, y in _loader(shuffle=True):
        assert torch.equal(x.squeeze(1), y.float() * 10)


def test_batch_sizes_and_len() -> None:
    loader = _loader()
    sizes = [len(y) for _, y in loader]
    assert sizes == [10] * 10 + [3] and len(loader) == 11
    dropping = _loader(drop_last=True)
    assert [len(y) for _, y in dropping] == [10] * 10 and len(dropping) == 10
    assert len(_loader(n=100, drop_last=True)) == len(_loader(n=100)) == 10


def test_set_epoch_changes_order_deterministically() -> None:
    loader = _loader(shuffle=True, seed=1)
    first = _epoch(loader)
    assert torch.equal(first, _epoch(loader))  # same epoch, same order
    loader.sampler.set_epoch(1)
    second = _epoch(loader)
    assert not torch.equal(first, second)
    assert sorted(second.tolist()) == list(range(103))
    other = _loader(shuffle=True, seed=1)
    other.sampler.set_epoch(1)
    assert torch.equal(second, _epoch(other))  # a resumed run sees the same order
    loader.sampler.set_epoch(0)
    assert torch.equal(first, _epoch(loader))


def test_seed_changes_order() -> None:
    assert not torch.equal(_epoch(_loader(shuffle=True, seed=0)),
                           _epoch(_loader(shuffle=True, seed=1)))


def test_order_ignores_global_rng() -> None:
    torch.manual_seed(0)
    a = _epoch(_loader(shuffle=True))
    torch.manual_seed(1)
    assert torch.equal(a, _epoch(_loader(shuffle=True)))


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_get_disjoint_equal_halves(shuffle: bool) -> None:
    parts = [_epoch(_loader(n=100, shuffle=shuffle, rank=r, world_size=2)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 50
    assert set(parts[0].tolist()).isdisjoint(parts[1].tolist())
    assert sorted(torch.cat(parts).tolist()) == list(range(100))
    assert len(_loader(n=100, rank=0, world_size=2)) == 5


def test_ranks_share_one_permutation_per_epoch() -> None:
    loaders = [_loader(n=100, shuffle=True, rank=r, world_size=2) for r in (0, 1)]
    for ld in loaders:
        ld.sampler.set_epoch(3)
    parts = [_epoch(ld) for ld in loaders]
    assert sorted(torch.cat(parts).tolist()) == list(range(100))


def test_uneven_shards_pad_by_wrapping() -> None:
    parts = [EpochSampler(101, shuffle=True, seed=0, rank=r, world_size=4).indices()
             for r in range(4)]
    assert [len(p) for p in parts] == [26] * 4
    assert set(torch.cat(parts).tolist()) == set(range(101))  # 3 indices repeated


def test_more_ranks_than_samples() -> None:
    parts = [EpochSampler(2, shuffle=False, rank=r, world_size=5).indices() for r in range(5)]
    assert all(len(p) == 1 for p in parts)
    assert set(torch.cat(parts).tolist()) == {0, 1}


def test_sampler_len() -> None:
    assert len(EpochSampler(10, False)) == 10
    assert len(EpochSampler(10, False, world_size=3)) == 4


def test_lightning_attributes() -> None:
    loader = _loader()
    assert loader.batch_sampler is None and isinstance(loader.sampler, EpochSampler)


def test_mismatched_tensors() -> None:
    with pytest.raises(ValueError, match="same length"):
        TensorBatchLoader((torch.zeros(5), torch.zeros(4)), batch_size=2)


@pytest.mark.parametrize("bs", [0, -1])
def test_bad_batch_size(bs: int) -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        TensorBatchLoader((torch.zeros(5),), batch_size=bs)


def test_empty_dataset() -> None:
    loader = TensorBatchLoader((torch.zeros(0, 3),), batch_size=4, shuffle=True)
    assert len(loader) == 0 and list(loader) == []
