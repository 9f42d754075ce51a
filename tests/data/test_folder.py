"""data/folder.py: the manifest of a folder or a table, its checks, splits and fingerprints."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from dlexp.data import folder
from dlexp.data.folder import Manifest, check_classes, from_table, scan, split
from dlexp.errors import ConfigError, DataError


def files(root: Path, layout: dict[str, int], ext: str = ".png") -> Path:
    """``{"cat": 3, "train/dog": 2}``: that many small files (distinct bytes) per folder."""
    for where, n in layout.items():
        (root / where).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / where / f"{i}{ext}").write_bytes(f"{where}/{i}".encode())
    return root


def manifest(labels: list[str], given: list[str] | None = None) -> Manifest:
    rels = [f"{lab}/{i}.png" for i, lab in enumerate(labels)]
    n = len(labels)
    return Manifest(base=Path("/d"), source="/d", rels=rels, labels=labels, given=given,
                    sizes=[1] * n, mtimes=[0] * n, hashes=[str(i) for i in range(n)],
                    errors=[None] * n, info=[None] * n)


def test_class_folders_sorted_junk_skipped_others_reported(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    root = files(tmp_path / "d", {"b": 2, "a": 3, "a/nested": 1, "10": 2, "9": 2})
    for junk in ("a/.DS_Store", "b/Thumbs.db", "desktop.ini", "a/._0.png"):
        (root / junk).write_bytes(b"junk")
    (root / ".git").mkdir()
    (root / "b" / "notes.txt").write_text("not an image")
    (root / "readme.md").write_text("outside any class")
    with caplog.at_level(logging.INFO):
        m = scan(root, cache_dir=tmp_path / "cache")
    assert m.classes == ["10", "9", "a", "b"]  # not numbers all: alphabetical
    assert sorted(m.labels).count("a") == 4  # the nested file counts for its class
    assert m.junk == 5 and m.given is None
    assert m.ignored == ["b/notes.txt", "readme.md"]
    assert "ignored 2 files" in caplog.text and "b/notes.txt" in caplog.text
    assert all(h is not None for h in m.hashes) and m.errors == [None] * len(m)


def test_numeric_class_names_sort_by_value(tmp_path: Path) -> None:
    m = scan(files(tmp_path, {"10": 2, "9": 2, "100": 2}), cache_dir=None)
    assert m.classes == ["9", "10", "100"]
    assert m.targets().tolist() == [1, 1, 2, 2, 0, 0]  # files in path order: 10, 100, 9


def test_split_folders_are_the_split(tmp_path: Path) -> None:
    root = files(tmp_path, {"train/cat": 3, "train/dog": 3, "val/cat": 1, "val/dog": 1,
                            "test/dog": 2})
    m = scan(root, cache_dir=None)
    parts = split(m, 0.5, 0.5, seed=0)
    assert {p: len(v) for p, v in parts.items()} == {"train": 6, "val": 2, "test": 2}
    assert {m.rel(i) for i in parts["test"].tolist()} == {"test/dog/0.png", "test/dog/1.png"}
    # train and val given, test not: a stratified part of train
    (root / "test" / "dog" / "0.png").unlink()
    (root / "test" / "dog" / "1.png").unlink()
    (root / "test" / "dog").rmdir()
    (root / "test").rmdir()
    parts = split(scan(root, cache_dir=None), 0.5, 2, seed=0)
    assert {p: len(v) for p, v in parts.items()} == {"train": 4, "val": 2, "test": 2}


def test_tables_csv_tsv_jsonl_parquet(tmp_path: Path) -> None:
    files(tmp_path / "img", {"x": 2, "y": 2})
    rows = [("img/x/0.png", "x", "train"), ("img/x/1.png", "x", "train"),
            ("img/y/0.png", "y", "train"), ("img/y/1.png", "y", "val")]
    (tmp_path / "t.csv").write_text("file,kind,split\n" + "".join(",".join(r) + "\n"
                                                                  for r in rows))
    (tmp_path / "t.tsv").write_text("file\tkind\n" + "".join(f"{r[0]}\t{r[1]}\n" for r in rows))
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"file": r[0], "kind": r[1]}) + "\n"
                                              for r in rows))
    m = from_table(tmp_path / "t.csv", "file", "kind")
    assert m.classes == ["x", "y"] and m.given == ["train", "train", "train", "val"]
    assert m.rel(0) == "img/x/0.png" and m.errors == [None] * 4
    for name in ("t.tsv", "t.jsonl"):
        m = from_table(tmp_path / name, "file", "kind")
        assert m.labels == ["x", "x", "y", "y"] and m.given is None
    with pytest.raises(DataError, match=r"no column 'path' \(data.path_column\); the columns "
                                        r"are 'file', 'kind', 'split'"):
        from_table(tmp_path / "t.csv")
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa
    pq.write_table(pa.table({"path": [r[0] for r in rows], "label": [0, 0, 1, 1]}),
                   tmp_path / "t.parquet")
    m = from_table(tmp_path / "t.parquet")
    assert m.classes == ["0", "1"]


def test_table_rows_naming_missing_files_are_bad_files(tmp_path: Path) -> None:
    files(tmp_path, {"x": 1})
    (tmp_path / "t.csv").write_text("path,label\nx/0.png,x\nx/gone.png,y\n,y\n")
    with pytest.raises(DataError, match="row 4 has no 'path'"):
        from_table(tmp_path / "t.csv")
    (tmp_path / "t.csv").write_text("path,label\nx/0.png,x\nx/gone.png,y\n")
    m = from_table(tmp_path / "t.csv")
    assert folder.bad_files(m) == {1: "no such file"}
    message = str(folder.bad_files_error(m, folder.bad_files(m)))
    assert message.endswith("1 bad file: x/gone.png (no such file). Fix or remove it, or set "
                            "data.on_bad_file=skip to train without it")


@pytest.mark.parametrize("case, want", [
    ("empty", "no data files found: put them in one subfolder per class"),
    ("one class", "one class ('a'); classifying needs at least 2"),
    ("small class", "class 'b' (1) has fewer than 2 training files: add files, or remove"),
    ("empty class", "class 'c' (0) has fewer than 2 training files"),
    ("val only", "class 'c' is in val but not in train: the model could never predict it"),
])
def test_bad_layouts_each_give_one_line(tmp_path: Path, case: str, want: str) -> None:
    layout = {"empty": {}, "one class": {"a": 3}, "small class": {"a": 3, "b": 1},
              "empty class": {"a": 2, "b": 2, "c": 0},
              "val only": {"train/a": 2, "train/b": 2, "val/c": 1}}[case]
    root = files(tmp_path / "d", layout)
    root.mkdir(exist_ok=True)
    with pytest.raises(DataError) as e:
        check_classes(scan(root, cache_dir=None))
    assert want in str(e.value) and "\n" not in str(e.value)


def test_missing_root_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; give a folder with one subfolder"):
        scan(tmp_path / "nope")


def test_stratified_split_follows_the_seed(tmp_path: Path) -> None:
    m = manifest(["a"] * 40 + ["b"] * 10)
    p1, p2, p3 = split(m, 0.2, 0.2, 1), split(m, 0.2, 0.2, 1), split(m, 0.2, 0.2, 2)
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert not torch.equal(p1["val"], p3["val"])
    y = m.targets()
    assert torch.bincount(y[p1["val"]]).tolist() == [8, 2]  # in proportion
    assert torch.bincount(y[p1["test"]]).tolist() == [8, 2]
    every = torch.cat(list(p1.values())).sort().values
    assert torch.equal(every, torch.arange(50))
    assert len(split(m, 5, 0, 0)["val"]) == 5 and len(split(m, 5, 0, 0)["test"]) == 0


def test_k_folds_partition_the_training_files(tmp_path: Path) -> None:
    m = manifest(["a"] * 20 + ["b"] * 13)
    runs = [split(m, 0.1, 3, seed=0, folds=5, fold=k) for k in range(5)]
    tests = {tuple(r["test"].tolist()) for r in runs}
    assert len(tests) == 1 and len(runs[0]["test"]) == 3  # one hold-out for every fold
    vals = torch.cat([r["val"] for r in runs]).sort().values
    pool = torch.cat([runs[0]["train"], runs[0]["val"]]).sort().values
    assert torch.equal(vals, pool)  # the folds partition what the test part leaves
    for r in runs:
        assert not set(r["val"].tolist()) & set(r["train"].tolist())
    with pytest.raises(ConfigError, match="has its own validation part"):
        split(manifest(["a", "a", "b", "b"], ["train", "val", "train", "train"]), 0, 0, 0,
              folds=2)
    with pytest.raises(ValueError, match="data.fold must be in 0..4"):
        split(m, 0, 0, 0, folds=5, fold=5)


def test_split_written_and_read_back(tmp_path: Path) -> None:
    root = files(tmp_path / "d", {"a": 6, "b": 6})
    m = scan(root, cache_dir=None)
    parts = split(m, 2, 2, seed=3)
    run = tmp_path / "run"
    run.mkdir()
    folder.write_split(run, m, parts)
    assert (run / "split" / "val.txt").read_text().splitlines() == \
        [m.rel(i) for i in parts["val"].tolist()]
    assert folder.split_lists_in(run) == run / "split"
    files(root, {"a/new": 1})  # a file added since: left out of the reused split
    again = folder.apply_split_lists(scan(root, cache_dir=None), run / "split")
    reused = split(again, 0.5, 0.5, seed=99)  # sizes and seed no longer matter
    for part in parts:
        assert [again.rel(i) for i in reused[part].tolist()] == \
            [m.rel(i) for i in parts[part].tolist()]
    (root / m.rel(int(parts["test"][0]))).unlink()
    with pytest.raises(DataError, match="1 files listed in .*test.txt are not in"):
        folder.apply_split_lists(scan(root, cache_dir=None), run / "split")


def test_duplicates_across_splits_are_named(caplog: pytest.LogCaptureFixture) -> None:
    m = manifest(["a", "a", "b", "b"])
    m.hashes = ["h1", "h2", "h1", "h3"]
    parts = {"train": torch.tensor([0, 1]), "val": torch.tensor([2]), "test": torch.tensor([3])}
    assert folder.duplicates(m, parts) == [("a/0.png", "b/2.png")]
    folder.warn_duplicates(m, parts)
    assert "1 files have the same content" in caplog.text and "a/0.png = b/2.png" in caplog.text


def test_imbalance_warning_names_the_weighted_loss(caplog: pytest.LogCaptureFixture) -> None:
    m = manifest(["a"] * 40 + ["b"] * 10)
    with caplog.at_level(logging.INFO):
        folder.log_counts(m, {"train": torch.arange(50)})
    assert "a 40, b 10" in caplog.text and "loss=weighted_cross_entropy" in caplog.text
    assert "data.sampler=balanced" in caplog.text
    caplog.clear()
    folder.log_counts(manifest(["a"] * 30 + ["b"] * 10), {"train": torch.arange(40)})
    assert "imbalanced" not in caplog.text


def test_scan_cache_reads_only_changed_files(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = files(tmp_path / "d", {"a": 3, "b": 3})
    (root / "b" / "2.png").write_bytes(b"")
    first = scan(root, cache_dir=tmp_path / "cache")
    assert first.errors[-1] == "empty file (0 bytes)"
    read = []
    real = folder._read_one
    monkeypatch.setattr(folder, "_read_one", lambda p, s, probe, **kw: read.append(p) or
                        real(p, s, probe, **kw))
    again = scan(root, cache_dir=tmp_path / "cache")
    assert read == [] and again.hashes == first.hashes and again.errors == first.errors
    (root / "a" / "1.png").write_bytes(b"changed")
    third = scan(root, cache_dir=tmp_path / "cache")
    assert read == [str(root.resolve() / "a" / "1.png")] and third.hashes[1] != first.hashes[1]


def test_scan_cache_is_plain_arrays_and_a_damaged_one_is_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import numpy as np

    root = files(tmp_path / "d", {"a": 2, "b": 2})
    first = scan(root, cache_dir=tmp_path / "cache")
    (path,) = (tmp_path / "cache" / "folders").glob("scan-*.npz")
    with np.load(path, allow_pickle=False) as z:  # nothing in it needs unpickling
        assert int(z["version"]) == folder.CACHE_VERSION and len(z["rels"]) == 4
    read: list[str] = []
    real = folder._read_one
    monkeypatch.setattr(folder, "_read_one", lambda p, s, probe, **kw: read.append(p) or
                        real(p, s, probe, **kw))
    for damage in (b"not a zip", path.read_bytes()[:100]):
        path.write_bytes(damage)
        with caplog.at_level(logging.DEBUG, logger="dlexp.data.folder"):
            again = scan(root, cache_dir=tmp_path / "cache")
        assert again.hashes == first.hashes and len(read) == 4 and "not used" in caplog.text
        assert "WARNING" not in caplog.text  # silent but for the debug line
        read.clear()
        caplog.clear()
    scan(root, cache_dir=tmp_path / "cache")  # rewritten: nothing read
    assert read == []
    monkeypatch.setattr(folder, "CACHE_VERSION", folder.CACHE_VERSION + 1)
    with np.load(path, allow_pickle=False) as z:  # an old version under the new key's name
        arrays = dict(z)
    np.savez(folder.scan_cache_path(first, tmp_path / "cache", None), **arrays)
    scan(root, cache_dir=tmp_path / "cache")
    assert len(read) == 4


def test_on_read_gets_each_files_bytes_in_the_one_read(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = files(tmp_path / "d", {"a": 300, "b": 3})  # > one chunk: worker processes
    (root / "b" / "0.png").write_bytes(b"")
    m = scan(root, read=False)
    assert m.hashes == [] and len(m) == 303
    stale = folder.cached_fingerprints(m, tmp_path / "cache")
    assert stale == list(range(303))
    use = folder.OnRead(range(303), _lengths)
    folder.read_files(m, stale, tmp_path / "cache", workers=2, on_read=use)
    bad = m.rels.index("b/0.png")
    assert m.errors[bad] == "empty file (0 bytes)"
    assert use.bad == {i: f"{len(f'{m.rels[i][:-4]}')} bytes" for i in range(303) if i != bad}
    read: list[str] = []
    real = folder._read_one
    monkeypatch.setattr(folder, "_read_one", lambda p, s, probe, **kw: read.append(p) or
                        real(p, s, probe, **kw))
    again = scan(root, read=False)
    assert folder.cached_fingerprints(again, tmp_path / "cache") == []
    assert again.hashes == m.hashes
    use = folder.OnRead([0, bad], _lengths)
    folder.read_files(again, [], tmp_path / "cache", workers=0, on_read=use)
    assert read == [again.paths[0]] and list(use.bad) == [0]  # the bad one is not read


def _lengths(pairs: list[tuple[int, bytes]]) -> dict[int, str]:
    """An OnRead function: every file 'fails' with its length, to see what it was given."""
    return {row: (None, f"{len(data)} bytes") for row, data in pairs}
