"""Multi-label tables: label cells split at data.label_sep, or one 0/1 column per label; their
errors; multi-hot targets; the iterative stratification of splits and folds."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOPICS, topic_text

from dlexp.data import folder, splits, table
from dlexp.data.text import TextTableDataModule
from dlexp.errors import DataError

SMALL = {"val_size": 3, "test_size": 3, "batch_size": 4, "eval_batch_size": 8,
         "tokenizer": {"vocab_size": 100, "min_frequency": 1}}


def _csv(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


# ---------------------------------------------------------------- parsing
def test_label_cells_split_at_the_separator() -> None:
    cells = ["b, a", "", None, " c ,, a ", 3.0, float("nan")]
    assert table.split_label_cells(cells, ",") == [("a", "b"), (), (), ("a", "c"), ("3",), ()]
    with pytest.raises(DataError, match="data.label_sep must be a non-empty string"):
        table.split_label_cells(["a"], "")


def test_zero_one_columns_become_label_sets() -> None:
    cols = {"text": ["x", "y", "z"], "toxic": ["1", "0", "true"], "insult": [0, 1, False],
            "obscene": ["no", "YES", 0.0]}
    sets = table.indicator_label_sets(cols, ["toxic", "insult", "obscene"], "t.csv")
    assert sets == [("toxic",), ("insult", "obscene"), ("toxic",)]
    for bad in ("2", "", None, "maybe", 0.5):
        with pytest.raises(DataError, match=r"t.csv row 1: column 'toxic' holds .*0 or 1"):
            table.indicator_label_sets({"toxic": ["1", bad]}, ["toxic"], "t.csv")


def test_label_column_lists_are_checked() -> None:
    cols = {"text": [], "toxic": [], "insult": []}
    with pytest.raises(DataError, match=r"no column 'obscene' \(data.label_column\); its "
                                        r"columns: 'text', 'toxic', 'insult'"):
        table.label_columns(cols, ["toxic", "obscene"], "t.csv")
    with pytest.raises(DataError, match="name 2 or more 0/1 columns"):
        table.label_columns(cols, ["toxic"], "t.csv")
    assert table.is_multilabel(["a", "b"], None) and table.is_multilabel("label", ",")
    assert not table.is_multilabel("label", None) and not table.is_multilabel(None, None)


def test_names_targets_and_label_checks() -> None:
    assert table.sorted_names(["10", "9", "2"]) == ["2", "9", "10"]
    assert table.sorted_names(["b", "a", "b"]) == ["a", "b"]
    y = table.multi_hot([("a",), (), ("a", "c")], ["a", "b", "c"])
    assert y.dtype == torch.float32 and y.tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 1]]
    with pytest.raises(DataError, match="at least 2 labels, found only 'a'"):
        table.check_label_names(["a"], "t.csv")
    with pytest.raises(DataError, match=r"label 'b' never occurs in the training split"):
        table.check_train_labels(y, ["a", "b", "c"], "t.csv")


# ---------------------------------------------------------------- image tables
def _image_table(tmp_path: Path, header: list[str], rows: list[list]) -> Path:
    for row in rows:
        (tmp_path / row[0]).write_bytes(b"not decoded here: " + row[0].encode())
    return _csv(tmp_path / "labels.csv", [header, *rows])


def test_image_table_with_a_separator(tmp_path: Path) -> None:
    path = _image_table(tmp_path, ["path", "tags"], [["0.png", "cat,dog"], ["1.png", ""],
                                                     ["2.png", "dog"], ["3.png", "cat"]])
    m = folder.from_table(path, label_column="tags", label_sep=",")
    assert m.multilabel and m.classes == ["cat", "dog"]
    assert m.targets().tolist() == [[1, 1], [0, 0], [0, 1], [1, 0]]
    folder.check_classes(m)
    sub = m.subset([0, 2])  # the split lists and bad-file paths keep label sets
    assert sub.targets().tolist() == [[1, 1], [0, 1]]
    parts = folder.split(m, 1, 1, seed=0)
    assert sorted(torch.cat(list(parts.values())).tolist()) == [0, 1, 2, 3]
    assert m.targets()[parts["train"]].sum(0).min() > 0


def test_image_table_with_label_columns_and_errors(tmp_path: Path) -> None:
    path = _image_table(tmp_path, ["path", "cat", "dog"], [["0.png", 1, 0], ["1.png", 1, 1],
                                                           ["2.png", 0, 1], ["3.png", 1, 1]])
    m = folder.from_table(path, label_column=["dog", "cat"])
    assert m.classes == ["dog", "cat"] and m.targets()[1].tolist() == [1, 1]
    with pytest.raises(DataError, match=r"no column 'bird'.*its columns: 'path', 'cat', 'dog'"):
        folder.from_table(path, label_column=["cat", "bird"])
    with pytest.raises(DataError, match="data.label_sep splits one label column"):
        folder.from_table(path, label_column=["cat", "dog"], label_sep=",")
    with pytest.raises(DataError, match="no column 'tags'"):
        folder.from_table(path, label_column="tags", label_sep=",")
    _csv(path, [["path", "cat", "dog"], ["0.png", 1, 2], ["1.png", 0, 1]])
    with pytest.raises(DataError, match="row 2: column 'dog' holds '2'"):
        folder.from_table(path, label_column=["cat", "dog"])


def test_image_table_label_checks(tmp_path: Path) -> None:
    path = _image_table(tmp_path, ["path", "tags"], [["0.png", "cat"], ["1.png", "cat"]])
    with pytest.raises(DataError, match="at least 2 labels, found only 'cat'"):
        folder.check_classes(folder.from_table(path, label_column="tags", label_sep=","))
    _csv(path, [["path", "tags"], ["0.png", "cat"], ["1.png", "cat,dog"]])
    with pytest.raises(DataError, match="label 'dog' is on fewer than 2 files"):
        folder.check_classes(folder.from_table(path, label_column="tags", label_sep=","))
    _csv(path, [["path", "tags", "split"], ["0.png", "cat", "train"], ["1.png", "cat", "train"],
                ["1.png", "cat,dog", "test"]])
    with pytest.raises(DataError, match="'dog' never occurs in the training split"):
        folder.check_classes(folder.from_table(path, label_column="tags", label_sep=","))


# ---------------------------------------------------------------- text tables
def _topic_rows(n: int = 30) -> list[list]:
    rng = np.random.default_rng(0)
    topics = list(TOPICS)
    rows = []
    for i in range(n):
        chosen = sorted({topics[i % 3], *([topics[(i + 1) % 3]] if i % 2 else [])})
        rows.append([" ".join(topic_text(rng, t) for t in chosen), "|".join(chosen)])
    return rows


def test_text_table_with_a_separator(tmp_path: Path) -> None:
    rows = [*_topic_rows(), ["no topic at all here", ""]]  # an empty cell: no label, allowed
    path = _csv(tmp_path / "t.csv", [["text", "label"], *rows])
    dm = TextTableDataModule(path=str(path), label_sep="|", threshold=0.3,
                             cache_dir=str(tmp_path / "cache"), **SMALL)
    dm.setup()
    assert dm.class_names == sorted(TOPICS) and dm.multilabel
    y = dm.train_set[1]
    assert y.shape == (len(rows) - 6, 3) and y.dtype == torch.float32
    assert sum(len(s[1]) for s in (dm.train_set, dm.val_set, dm.test_set)) == len(rows)
    info = dm.describe()
    assert info["multilabel"] and info["threshold"] == 0.3
    with pytest.raises(DataError, match="needs single-label data"):
        TextTableDataModule(path=str(path), label_sep="|", num_labeled=10,
                            cache_dir=str(tmp_path / "cache"), **SMALL).setup()


def test_text_table_with_label_columns_and_errors(tmp_path: Path) -> None:
    rows = [[t, int("music" in lab), int("sport" in lab)] for t, lab in _topic_rows()]
    path = _csv(tmp_path / "t.csv", [["text", "music", "sport"], *rows])
    dm = TextTableDataModule(path=str(path), label_column=["sport", "music"],
                             cache_dir=str(tmp_path / "cache"), **SMALL)
    dm.setup()
    assert dm.class_names == ["sport", "music"] and dm.num_classes == 2
    assert not TextTableDataModule(path=str(path), cache_dir=str(tmp_path / "c")).multilabel
    with pytest.raises(DataError, match=r"no column 'weather'.*'text', 'music', 'sport'"):
        TextTableDataModule(path=str(path), label_column=["weather", "music"],
                            cache_dir=str(tmp_path / "cache"), **SMALL).setup()
    _csv(path, [["text", "music", "sport"], *rows[:5], ["words", "1", "x"]])
    with pytest.raises(DataError, match="row 5: column 'sport' holds 'x'"):
        TextTableDataModule(path=str(path), label_column=["music", "sport"],
                            cache_dir=str(tmp_path / "cache"), **SMALL).setup()
    _csv(path, [["text", "label"], ["a b", "x"], ["c d", "x"], ["e f", "x|y"]])
    with pytest.raises(DataError, match="label 'y' is on fewer than 2 training texts"):
        TextTableDataModule(path=str(path), label_sep="|",
                            cache_dir=str(tmp_path / "cache"), **SMALL).setup()


# ---------------------------------------------------------------- splits
def _multi_hot(n: int, rates: list[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, len(rates), generator=g) < torch.tensor(rates)).float()


def test_iterative_split_sizes_and_strata() -> None:
    y = _multi_hot(200, [0.5, 0.3, 0.1, 0.05, 0.02])
    kept, out = splits.stratified_split(y, 40, seed=0)
    assert len(out) == 40 and len(kept) == 160
    assert sorted(torch.cat([kept, out]).tolist()) == list(range(200))
    expected = y.sum(0) * 0.2
    assert ((y[out].sum(0) - expected).abs() <= 1.5).all()  # each label in proportion
    assert (y[kept].sum(0) > 0).all()  # a rare label's first rows go to training
    again = splits.stratified_split(y, 40, seed=0)
    assert torch.equal(again[1], out) and not torch.equal(splits.stratified_split(y, 40, 1)[1], out)


def test_multilabel_folds_partition_the_rows() -> None:
    y = _multi_hot(103, [0.4, 0.2, 0.1])
    held = [splits.fold_split(y, 5, k, seed=3)[1] for k in range(5)]
    assert sorted(torch.cat(held).tolist()) == list(range(103))
    assert sorted(len(h) for h in held) == [20, 20, 21, 21, 21]
    for h in held:
        assert ((y[h].sum(0) - y.sum(0) / 5).abs() <= 1.5).all()
