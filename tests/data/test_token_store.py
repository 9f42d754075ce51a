"""TokenStore: padding, taking, truncation."""

from __future__ import annotations

import pytest
import torch

from dlexp.data.token_store import TokenStore, offsets_of


def _store(lengths: list[int]) -> TokenStore:
    """Sequence i holds i * 1000 + 1, ... so every token says where it came from."""
    seqs = [torch.arange(1, n + 1) + i * 1000 for i, n in enumerate(lengths)]
    return TokenStore(torch.cat(seqs).int(), offsets_of(torch.tensor(lengths)))


def _seq(store: TokenStore, i: int) -> list[int]:
    return store.flat[store.offsets[i]:store.offsets[i + 1]].tolist()


def _random_lengths(n: int = 300, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 200, (n,), generator=g).tolist()


def test_pad_per_batch() -> None:
    store = _store([5, 1, 3])
    ids, lengths = store.pad(torch.tensor([2, 0, 1]))
    assert ids.dtype == lengths.dtype == torch.int64
    assert lengths.tolist() == [3, 5, 1] and ids.shape == (3, 5)  # the batch's longest, not more
    assert ids.tolist() == [[2001, 2002, 2003, 0, 0], [1, 2, 3, 4, 5], [1001, 0, 0, 0, 0]]
    ids, _ = store.pad(torch.tensor([1]))
    assert ids.tolist() == [[1001]]


def test_take_and_cat() -> None:
    store = _store([2, 3, 1])
    sub = store.take(torch.tensor([2, 0]))
    assert len(sub) == 2 and _seq(sub, 0) == [2001] and _seq(sub, 1) == [1, 2]
    both = TokenStore.cat([store, sub])
    assert len(both) == 5 and [_seq(both, i) for i in range(5)] == \
        [_seq(store, 0), _seq(store, 1), _seq(store, 2), [2001], [1, 2]]
    assert len(store.take(torch.tensor([], dtype=torch.long))) == 0


def test_truncate_head() -> None:
    store = _store([10, 3, 4]).truncate(4, "head")
    assert store.lengths.tolist() == [4, 3, 4]
    assert _seq(store, 0) == [1, 2, 3, 4] and _seq(store, 1) == [1001, 1002, 1003]


def test_truncate_head_tail_keeps_first_and_last_tokens() -> None:
    store = _store([20, 8, 9]).truncate(8, "head_tail")  # head 8 // 4 = 2, tail 6
    assert store.lengths.tolist() == [8, 8, 8]
    assert _seq(store, 0) == [1, 2, 15, 16, 17, 18, 19, 20]
    assert _seq(store, 1) == list(range(1001, 1009))  # short enough: untouched
    assert _seq(store, 2) == [2001, 2002, 2004, 2005, 2006, 2007, 2008, 2009]


def test_truncate_no_op_and_errors() -> None:
    store = _store([3, 2])
    assert store.truncate(None) is store and store.truncate(3) is store
    with pytest.raises(ValueError, match="data.truncate"):
        store.truncate(2, "middle")
    with pytest.raises(ValueError, match="data.max_len"):
        store.truncate(0)
