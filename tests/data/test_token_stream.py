"""The language model's token stream (data/token_stream.py): review ends marked, rows that
continue across batches (forward and reversed), never a val or test review, no val or test
part; IMDB's and your own texts (folders, tables) with their unlabeled ones."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOPICS, topic_text

from dlexp.data.imdb import IMDBDataModule
from dlexp.data.text import TextFolderDataModule, TextTableDataModule
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


def test_val_and_test_reviews_are_dropped_or_refused(tiny_imdb: Path, tmp_path: Path) -> None:
    base = _imdb(tiny_imdb)
    base.setup()
    copied = TokenStore.cat([base.test_set[0].take(torch.tensor([3, 7])),
                             base.val_set[0].take(torch.tensor([0]))])
    base.train_set = (TokenStore.cat([base.train_set[0], copied]), base.train_set[1])
    data = TokenStreamDataModule(base, bptt=8, batch_size=4)
    data.setup()
    _assert_held_out_text_left_out(data)
    assert len(data.train_stream) == len(base.train_set[0]) - 3 + len(base.unlabeled_set[0])
    with pytest.raises(DataError, match="copies of texts it must never see \\(1 of the val "
                                        "split, 2 of the test split\\)"):
        TokenStreamDataModule(base, test_duplicates="refuse").setup()


def _assert_held_out_text_left_out(data: TokenStreamDataModule) -> None:
    stream = set(_rows(data.train_stream))
    for part in (data.base.val_set, data.base.test_set):
        assert not stream & set(_rows(part[0]))


def _copy_of(root: Path, name: str, to: Path) -> None:
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_text((root / name).read_text())


def test_your_own_unlabeled_texts_join_the_stream(tmp_path: Path) -> None:
    """data=text_folder's unlabeled_dirs and data=text_table's unlabeled rows feed the stream;
    their copies of val/test texts are left out."""
    root = _topic_folder(tmp_path / "texts")
    _copy_of(root, "test/music/0.txt", root / "train/unsup/copy_of_test.txt")
    folder = TextFolderDataModule(root=str(root), cache_dir=str(tmp_path / "cache"), val_size=4,
                                  tokenizer={"min_frequency": 1})
    data = TokenStreamDataModule(folder, bptt=8, batch_size=4)
    data.setup()
    _assert_held_out_text_left_out(data)
    assert len(folder.unlabeled_set[1]) == 11 and len(data.train_stream) == 16 + 10
    rows = [("text", "label", "split")]
    rows += [((root / n).read_text(), n.split("/")[1], n.split("/")[0]) for n in
             sorted(str(p.relative_to(root)) for p in root.glob("*/*/*.txt"))]
    table = tmp_path / "texts.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows((t, "", "unlabeled") if y == "unsup" else (t, y, s)
                                for t, y, s in rows)
    data = TokenStreamDataModule(TextTableDataModule(path=str(table), val_size=4,
                                                     cache_dir=str(tmp_path / "cache"),
                                                     tokenizer={"min_frequency": 1}),
                                 bptt=8, batch_size=4)
    data.setup()
    _assert_held_out_text_left_out(data)
    assert len(data.base.unlabeled_set[1]) == 11 and len(data.train_stream) == 16 + 10
    assert data.num_classes == 2


def _topic_folder(root: Path) -> Path:
    """train/{music,sport} (10 each), train/unsup (10, mixed), test/{music,sport} (3 each)."""
    rng = np.random.default_rng(0)
    for folder, n in {"train/music": 10, "train/sport": 10, "train/unsup": 10, "test/music": 3,
                      "test/sport": 3}.items():
        (root / folder).mkdir(parents=True)
        topic = folder.split("/")[1]
        for i in range(n):
            (root / folder / f"{i}.txt").write_text(
                topic_text(rng, topic if topic in TOPICS else "weather"))
    return root


def _rows(store: TokenStore) -> list:
    return [store.flat[store.offsets[i]:store.offsets[i + 1]].numpy().tobytes()
            for i in range(len(store))]


def test_val_and_test_parts_are_refused(tiny_imdb: Path) -> None:
    for parts in (["train", "test"], ["val"], []):
        with pytest.raises(ValueError, match="never on val or test text"):
            TokenStreamDataModule(_imdb(tiny_imdb), parts=parts)
    with pytest.raises(DataError, match="no test stage"):
        TokenStreamDataModule(_imdb(tiny_imdb)).test_dataloader()
