"""The language model's token stream (data/token_stream.py): review ends marked, rows that
continue across batches (forward and reversed), never a test review, no val or test part."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlexp.data.imdb import IMDBDataModule
from dlexp.data.token_store import TokenStore, offsets_of
from dlexp.data.token_stream import StreamLoader, TokenStreamDataModule, as_stream
from dlexp.errors import DataError


def _store(*reviews: list[int]) -> TokenStore:
    flat = torch.tensor([t for r in reviews for t in r], dtype=torch.int32)
    return TokenStore(flat, offsets_of(torch.tensor([len(r) for r in reviews])))


def _imdb(root: Path, **kwargs) -> IMDBDataModule:
    return IMDBDataModule(root=str(root), download=False, val_size=40,
                          tokenizer={"vocab_size": 200, "min_frequency": 1},
                          cache_dir=str(root / "cache"), **kwargs)


def test_stream_marks_review_ends_and_rows_continue_across_batches() -> None:
    store = _store([5, 6, 7], [8, 9], [10, 11, 12, 13])
    assert as_stream(store, torch.tensor([1, 0])).tolist() == [8, 9, 0, 5, 6, 7, 0]
    loader = StreamLoader(store, batch_size=2, bptt=2, shuffle=False)
    batches = list(loader)
    assert len(batches) == len(loader) == 3  # 12 tokens: 2 rows of 6, 5 targets, 2 + 2 + 1
    (x0, y0), (x1, y1), (x2, y2) = batches
    assert x0.tolist() == [[5, 6], [0, 10]] and y0.tolist() == [[6, 7], [10, 11]]
    assert torch.equal(x1[:, 0], y0[:, -1])  # the next slice starts where this one ended
    assert x2.tolist() == [[8], [13]] and y2.tolist() == [[9], [0]]


def test_backward_rows_read_the_stream_reversed() -> None:
    store = _store([5, 6, 7], [8, 9], [10, 11, 12, 13])
    (x, y, xb, yb), *_ = StreamLoader(store, batch_size=2, bptt=2, shuffle=False, backward=True)
    assert x.tolist() == [[5, 6], [0, 10]]
    assert xb.tolist() == [[0, 13], [9, 8]] and yb.tolist() == [[13, 12], [8, 0]]


def test_test_reviews_are_dropped_or_refused(tiny_imdb: Path, tmp_path: Path) -> None:
    base = _imdb(tiny_imdb)
    base.setup()
    copied = base.test_set[0].take(torch.tensor([3, 7]))
    base.train_set = (TokenStore.cat([base.train_set[0], copied]), base.train_set[1])
    data = TokenStreamDataModule(base, bptt=8, batch_size=4)
    data.setup()
    stream = {bytes(r) for r in _rows(data.train_stream)}
    assert not stream & {bytes(r) for r in _rows(base.test_set[0])}
    assert len(data.train_stream) == len(base.train_set[0]) - 2 + len(base.unlabeled_set[0])
    with pytest.raises(DataError, match="2 review.*of the test split"):
        TokenStreamDataModule(base, test_duplicates="refuse").setup()


def _rows(store: TokenStore) -> list:
    return [store.flat[store.offsets[i]:store.offsets[i + 1]].numpy().tobytes()
            for i in range(len(store))]


def test_val_and_test_parts_are_refused(tiny_imdb: Path) -> None:
    for parts in (["train", "test"], ["val"], []):
        with pytest.raises(ValueError, match="never on val or test text"):
            TokenStreamDataModule(_imdb(tiny_imdb), parts=parts)
    with pytest.raises(DataError, match="no test stage"):
        TokenStreamDataModule(_imdb(tiny_imdb)).test_dataloader()
