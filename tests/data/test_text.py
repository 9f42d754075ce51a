"""data=text_table and data=text_folder on tiny generated tables and folders: formats, column
defaults, folder layouts (aclImdb's unsup), bad data, splits, folds, three classes; and one
training run from a CSV whose checkpoint predicts the user's class names."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, REPO, TOPICS, make_text_table, topic_text

from dlexp.data import text as text_module
from dlexp.data import tokenized as tokenized_module
from dlexp.data.text import TextFolderDataModule, TextTableDataModule
from dlexp.data.tokenizer import encode_texts, train_tokenizer
from dlexp.errors import DataError
from dlexp.models.rnn import RNNClassifier

SMALL = {"val_size": 3, "test_size": 3, "batch_size": 4, "eval_batch_size": 8,
         "tokenizer": {"vocab_size": 100, "min_frequency": 1}}


def _rows(per_class: int = 6, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"text": topic_text(rng, topic), "label": topic}
            for _ in range(per_class) for topic in TOPICS]


def _write(path: Path, rows: list[dict]) -> Path:
    """``rows`` in the format ``path``'s suffix names."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: [r.get(c) for r in rows] for c in columns}), path)
    else:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writerow(columns)
            writer.writerows([r.get(c, "") for c in columns] for r in rows)
    return path


def _table(tmp_path: Path, rows: list[dict], name: str = "t.csv", **kwargs) -> TextTableDataModule:
    dm = TextTableDataModule(path=str(_write(tmp_path / name, rows)),
                             cache_dir=str(tmp_path / "cache"), **{**SMALL, **kwargs})
    dm.setup()
    return dm


def _folder(root: Path, layout: dict[str, int], seed: int = 0) -> Path:
    """``layout``: ``{"train/music": 4, ...}`` -> that many topic texts per folder (the last
    part of the folder name is its topic; others, such as unsup, get mixed texts)."""
    rng = np.random.default_rng(seed)
    for folder, n in layout.items():
        (root / folder).mkdir(parents=True)
        topic = folder.rsplit("/", 1)[-1]
        for i in range(n):
            (root / folder / f"{i}.txt").write_text(
                topic_text(rng, topic if topic in TOPICS else list(TOPICS)[i % 3]))
    return root


def _folder_dm(root: Path, tmp_path: Path, **kwargs) -> TextFolderDataModule:
    dm = TextFolderDataModule(root=str(root), cache_dir=str(tmp_path / "cache"),
                              **{**SMALL, **kwargs})
    dm.setup()
    return dm


def _sizes(dm: TextTableDataModule) -> list[int]:
    return [len(s[1]) for s in (dm.train_set, dm.val_set, dm.test_set, dm.unlabeled_set)]


# ---------------------------------------------------------------- tables
@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.jsonl", "t.parquet"])
def test_every_table_format_gives_three_sorted_classes(tmp_path: Path, name: str) -> None:
    dm = _table(tmp_path, _rows(), name)
    assert dm.class_names == ["music", "sport", "weather"] and dm.num_classes == 3
    assert _sizes(dm) == [12, 3, 3, 0]
    assert sorted(dm.test_set[1].tolist()) == [0, 1, 2]  # stratified: one of each
    info = dm.describe()
    assert info["name"] == "text_table" and info["modality"] == "text"
    assert info["class_names"] == ["music", "sport", "weather"]
    assert info["net_kwargs"]["num_classes"] == 3
    ids, lengths = encode_texts(info, ["a guitar song"])  # what predict does
    assert ids.shape[0] == 1 and int(lengths[0]) == 3


def test_usual_column_names_and_named_columns(tmp_path: Path) -> None:
    rows = [{"id": i, "Review": r["text"], "sentiment": r["label"]} for i, r in
            enumerate(_rows())]
    assert _table(tmp_path, rows).class_names == ["music", "sport", "weather"]
    renamed = [{"body": r["text"], "topic": r["label"]} for r in _rows()]
    dm = _table(tmp_path, renamed, "r.csv", text_column="body", label_column="topic")
    assert dm.num_classes == 3
    with pytest.raises(DataError, match=r"no column named text or review or sentence or "
                                        r"content; its columns: 'body', 'topic'"):
        _table(tmp_path, renamed, "r2.csv")
    with pytest.raises(DataError, match=r"no column 'topics' \(data.label_column\)"):
        _table(tmp_path, renamed, "r3.csv", text_column="body", label_column="topics")


def test_integer_labels_sort_by_value(tmp_path: Path) -> None:
    rows = [{"text": r["text"], "label": {"music": 10, "sport": 2, "weather": 1}[r["label"]]}
            for r in _rows()]
    dm = _table(tmp_path, rows)
    assert dm.class_names == ["1", "2", "10"]
    wanted = [dm.class_names.index(str(rows[int(r)]["label"])) for r in dm.split_names["train"]]
    assert dm.train_set[1].tolist() == wanted


def test_a_split_column_is_honoured(tmp_path: Path) -> None:
    rows = [{**r, "split": ["train", "train", "val", "test", ""][i % 5]}
            for i, r in enumerate(_rows(per_class=10))]
    dm = _table(tmp_path, rows, val_size=0, test_size=0)
    given = {p: {str(i) for i, r in enumerate(rows) if r["split"] == p} for p in ("val", "test")}
    assert set(dm.split_names["val"]) == given["val"]
    assert set(dm.split_names["test"]) == given["test"]
    assert len(dm.split_names["train"]) == sum(r["split"] in ("train", "") for r in rows)
    bad = [{**r, "split": "holdout"} for r in _rows()]
    with pytest.raises(DataError, match="row 0: column 'split' holds 'holdout'; a split is "
                                        "train, val, test or unlabeled"):
        _table(tmp_path, bad, "b.csv")


def test_rows_whose_split_is_unlabeled_join_the_pool(tmp_path: Path) -> None:
    """Unlabeled texts in a table: split ``unlabeled`` (their label cell is not read); an empty
    label elsewhere is still bad data."""
    rows = [{**r, "split": ""} for r in _rows()]
    rows += [{"text": "loose words about a guitar", "label": "", "split": "unlabeled"},
             {"text": "a storm and rain", "label": "music", "split": "Unsup"}]
    dm = _table(tmp_path, rows, tokenizer={"use_unsup": True, "min_frequency": 1})
    assert dm.class_names == sorted(TOPICS)
    assert _sizes(dm) == [12, 3, 3, 2] and dm.unlabeled_set[1].tolist() == [-1, -1]
    assert dm.split_names["unlabeled"] == ["18", "19"]
    assert "storm" in json.loads(dm.tokenizer_json)["model"]["vocab"]  # fitted on them too
    with pytest.raises(DataError, match=r"row 18 \(no label\)"):
        _table(tmp_path, [*rows[:-2], {**rows[-2], "split": ""}], "b.csv")


# ---------------------------------------------------------------- folders
def test_class_folders(tmp_path: Path) -> None:
    root = _folder(tmp_path / "texts", {"music": 6, "sport": 6, "weather": 6})
    (root / "music" / ".DS_Store").write_bytes(b"\0")
    (root / "sport" / "notes.md").write_text("not a text of the data")
    dm = _folder_dm(root, tmp_path)
    assert dm.class_names == ["music", "sport", "weather"]
    assert _sizes(dm) == [12, 3, 3, 0]
    assert all(n.endswith(".txt") for p in dm.split_names.values() for n in p)
    assert dm.describe()["name"] == "text_folder"


def test_split_folders_with_an_unsup_dir(tmp_path: Path) -> None:
    """The aclImdb layout: train/{neg,pos,unsup}, test/{neg,pos}; unsup is the pool."""
    root = _folder(tmp_path / "aclImdb", {"train/music": 6, "train/sport": 6, "train/unsup": 5,
                                          "test/music": 2, "test/sport": 2})
    dm = _folder_dm(root, tmp_path, num_labeled=6)
    assert dm.class_names == ["music", "sport"]
    assert _sizes(dm) == [6, 3, 4, 3 + 5]  # 12 train - 3 val, 6 of 9 labeled; the test given
    assert dm.unlabeled_set[1].tolist().count(-1) == 5
    assert sorted(dm.split_names["test"]) == [f"test/{c}/{i}.txt" for c in ("music", "sport")
                                              for i in range(2)]
    assert sum(n.startswith("train/unsup/") for n in dm.split_names["unlabeled"]) == 5
    everything = _folder_dm(root, tmp_path, unlabeled_dirs=[])
    assert everything.class_names == ["music", "sport", "unsup"]


def test_unsup_texts_can_fit_the_tokenizer(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"train/music": 4, "train/sport": 4, "train/unsup": 3})
    fitted = _folder_dm(root, tmp_path, val_size=2, test_size=2,
                        tokenizer={"use_unsup": True, "min_frequency": 1})
    assert fitted.unlabeled_set[1].tolist() == [-1] * 3
    flat = _folder(tmp_path / "flat", {"music": 4, "sport": 4})
    with pytest.raises(DataError, match="use_unsup=true but the data has no unlabeled texts"):
        _folder_dm(flat, tmp_path, val_size=2, test_size=2, tokenizer={"use_unsup": True})


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.root: no such folder"):
        TextFolderDataModule(root=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders in"):
        _folder_dm(tmp_path / "empty", tmp_path)
    root = _folder(tmp_path / "z", {"music": 4, "sport": 4, "weather": 0})
    with pytest.raises(DataError, match="class 'weather' has 0 training examples"):
        _folder_dm(root, tmp_path, val_size=1, test_size=1)


# ---------------------------------------------------------------- bad data
def test_empty_texts_are_named_or_skipped(tmp_path: Path) -> None:
    rows = _rows(per_class=10)
    for i in (1, 4, 5, 7, 9, 10, 11, 13, 15, 16, 20, 22):
        rows[i]["text"] = "   " if i % 2 else ""
    rows[2]["label"] = ""
    with pytest.raises(DataError) as error:
        _table(tmp_path, rows)
    message = str(error.value)
    assert message.startswith("13 bad entries in ") and "\n" not in message
    assert "row 1 (empty text), row 2 (no label), row 4 (empty text)" in message
    assert message.count("(empty text)") + message.count("(no label)") == 10
    assert "and 3 more" in message and "data.on_bad_file=skip" in message
    dm = _table(tmp_path, rows, "s.csv", on_bad_file="skip", val_size=1, test_size=1)
    assert sum(_sizes(dm)) == 30 - 13 and len(dm.skipped) == 13
    dm.write_split(tmp_path / "run")
    listed = (tmp_path / "run" / "bad_files.txt").read_text().splitlines()
    assert listed[:2] == ["1\tempty text", "2\tno label"] and len(listed) == 13


def test_an_empty_file_in_a_folder_is_bad(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"music": 4, "sport": 4})
    (root / "sport" / "blank.txt").write_text("\n")
    with pytest.raises(DataError, match=r"1 bad entry in .*: sport/blank.txt \(empty text\)"):
        _folder_dm(root, tmp_path, val_size=2, test_size=2)


@pytest.mark.parametrize(("labels", "split", "match"), [
    (["a"] * 6, None, "at least 2 classes in the training data, found only 'a'"),
    (["a"] * 5 + ["b"], None, "class 'b' has 1 training example; each class needs at least 2"),
    (["a", "b"] * 3 + ["c"], "test", "row 6 of the test split has class 'c', which the "
                                     "training data does not have"),
])
def test_classes_that_cannot_be_trained_fail_first(tmp_path: Path, labels: list[str],
                                                   split: str | None, match: str) -> None:
    rows = [{"text": f"text number {i}", "label": y, "split": ""} for i, y in enumerate(labels)]
    if split:
        rows[-1]["split"] = split
    with pytest.raises(DataError, match=match):
        _table(tmp_path, rows, val_size=1, test_size=1)


def test_bad_settings_fail_when_built(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", _rows())
    with pytest.raises(ValueError, match="data.on_bad_file must be one of error, skip"):
        TextTableDataModule(path=str(path), on_bad_file="ignore")
    with pytest.raises(ValueError, match="data.fold must be in 0..2 for data.folds=3"):
        TextTableDataModule(path=str(path), folds=3, fold=3)
    with pytest.raises(DataError, match="data.path: no such file"):
        TextTableDataModule(path=str(tmp_path / "absent.csv"))
    with pytest.raises(DataError, match="not a table dlexp reads"):
        TextTableDataModule(path=str(tmp_path / "t.xlsx"))
    with pytest.raises(DataError, match="no test data"):
        _table(tmp_path, _rows(), test_size=0)


# ---------------------------------------------------------------- splits
def test_split_is_seeded_and_written(tmp_path: Path) -> None:
    rows = _rows(per_class=10)
    first, again = (_table(tmp_path, rows, seed=1) for _ in range(2))
    other = _table(tmp_path, rows, seed=2)
    assert first.split_names == again.split_names != other.split_names
    assert sorted(sum(first.split_names.values(), []), key=int) == [str(i) for i in range(30)]
    first.write_split(tmp_path / "run")
    for part in ("train", "val", "test", "unlabeled"):
        written = (tmp_path / "run" / "split" / f"{part}.txt").read_text().splitlines()
        assert written == first.split_names[part]


def test_folds_partition_the_training_rows(tmp_path: Path) -> None:
    rows = _rows(per_class=10)
    folds = [_table(tmp_path, rows, folds=3, fold=k) for k in range(3)]
    assert all(f.split_names["test"] == folds[0].split_names["test"] for f in folds)
    vals = [set(f.split_names["val"]) for f in folds]
    assert not (vals[0] & vals[1] or vals[0] & vals[2] or vals[1] & vals[2])
    everything = set(folds[0].split_names["train"]) | vals[0]
    assert set().union(*vals) == everything and len(everything) == 27
    assert all(len(v) == 9 and len(set(f.val_set[1].tolist())) == 3
               for v, f in zip(vals, folds, strict=True))
    given = [{**r, "split": "val" if i == 0 else ""} for i, r in enumerate(rows)]
    with pytest.raises(DataError, match="data.folds draws the validation folds"):
        _table(tmp_path, given, "g.csv", folds=3)


# ---------------------------------------------------------------- tokens and networks
def test_three_classes_reach_the_network(tmp_path: Path) -> None:
    dm = _table(tmp_path, _rows())
    net = RNNClassifier(**dm.net_kwargs(), embedding_dim=8, hidden_size=8)
    (ids, lengths), labels = next(iter(dm.train_dataloader()))
    assert net(ids, lengths).shape == (len(labels), 3)


def test_token_ids_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counting(texts: object, *args: object) -> object:
        texts = list(texts)
        calls.append(len(texts))
        return train_tokenizer(texts, *args)

    monkeypatch.setattr(tokenized_module, "train_tokenizer", counting)
    rows = _rows()
    first = _table(tmp_path, rows)
    second = _table(tmp_path, rows, max_len=2)  # truncation comes after the cache
    assert calls == [12]  # fitted on the training split only, once
    assert first.tokenizer_json == second.tokenizer_json
    assert int(second.train_set[0].lengths.max()) <= 2
    _table(tmp_path, rows, seed=5)  # another training split: another tokenizer
    assert calls == [12, 12]


def test_a_given_tokenizer_encodes_and_keys_the_cache(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """use_pipeline (transfer.source, dlexp-eval): the checkpoint's tokenizer encodes the texts,
    none is fitted, and the token cache is keyed by that tokenizer, not by data.tokenizer."""
    rows = _rows()
    source = _table(tmp_path, rows)
    fitted: list[int] = []
    monkeypatch.setattr(tokenized_module, "train_tokenizer",
                        lambda texts, *a: fitted.append(1) or train_tokenizer(texts, *a))
    cache = tmp_path / "cache" / "text"

    def given(**kwargs: object) -> TextTableDataModule:
        dm = TextTableDataModule(path=str(tmp_path / "t.csv"), cache_dir=str(tmp_path / "cache"),
                                 **{**SMALL, "tokenizer": {"vocab_size": 8}, "max_len": 3,
                                    **kwargs})
        dm.use_pipeline(source.describe(), truncation=False)
        dm.setup()
        return dm

    before = set(cache.iterdir())
    dm = given()
    assert fitted == [] and dm.tokenizer_json == source.tokenizer_json
    assert dm.vocab_size == source.vocab_size > 8 and dm.max_len == 3  # truncation: the run's
    assert torch.equal(dm.test_set[0].truncate(2, "head").flat,
                       source.test_set[0].truncate(2, "head").flat)
    assert len(set(cache.iterdir()) - before) == 1  # its own entry
    again = set(cache.iterdir())
    given(max_len=5)
    assert set(cache.iterdir()) == again and fitted == []  # served from that entry
    _table(tmp_path, rows, tokenizer={"vocab_size": 8})  # the same settings, fitted: another
    assert fitted == [1] and len(set(cache.iterdir()) - again) == 1


# ---------------------------------------------------------------- a whole run
@pytest.mark.integration
def test_train_on_a_csv_and_predict_its_class_names(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    import dlexp
    from dlexp.predict import main as predict_main

    csv_path = make_text_table(tmp_path / "texts.csv", per_class=40)
    run = dlexp.train(*FAST, "data=text_table", f"data.path={csv_path}", "model=lstm",
                      "trainer.max_epochs=1", "logger=none", f"paths.log_dir={tmp_path}",
                      f"data.cache_dir={tmp_path / 'cache'}", "model.embedding_dim=16",
                      "model.hidden_size=16", "data.batch_size=16",
                      "data.tokenizer.min_frequency=1")
    assert run.metrics["status"] == "ok", run.metrics.get("error")
    split = run.run_dir / "split"
    counts = {p: len((split / f"{p}.txt").read_text().splitlines()) for p in ("train", "val",
                                                                              "test")}
    assert counts == {"train": 96, "val": 12, "test": 12}
    predict_main([run.metrics["best_ckpt"], "--text", "a guitar song", "--json"])
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["class"] in TOPICS and {t["class"] for t in out["top"]} <= set(TOPICS)
    # another table of the same topics: all of it is tested, with the checkpoint's tokenizer
    new = make_text_table(tmp_path / "new.csv", per_class=5, seed=1)
    done = subprocess.run([sys.executable, str(REPO / "eval.py"), run.metrics["best_ckpt"],
                           f"data.path={new}", f"hydra.run.dir={tmp_path / 'eval'}",
                           "predictions=true"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = (tmp_path / "eval" / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 15
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["status"] == "ok"


def test_every_text_gets_a_label_tensor(tmp_path: Path) -> None:
    dm = _table(tmp_path, _rows())
    assert all(isinstance(s[1], torch.Tensor) and s[1].dtype == torch.long
               for s in (dm.train_set, dm.val_set, dm.test_set, dm.unlabeled_set))


def test_a_warm_text_folder_reads_no_unchanged_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from dlexp.data import folder

    root = _folder(tmp_path / "d", {"music": 6, "sport": 6, "cooking": 6})
    (root / "music" / "0.txt").write_bytes(b"windows\r\nline ends\rand old mac ones\r\n")
    scanned: list[str] = []
    real_scan = folder._read_one
    monkeypatch.setattr(folder, "_read_one", lambda p, s, probe, **kw: scanned.append(p) or
                        real_scan(p, s, probe, **kw))
    opened: list[str] = []
    real_read = text_module._read_text
    monkeypatch.setattr(text_module, "_read_text", lambda p: opened.append(p) or real_read(p))
    first = _folder_dm(root, tmp_path)
    assert len(scanned) == len(set(scanned)) == 18 and opened == []  # a cold start: one read
    corpus = text_module.read_text_folder(root, cache_dir=tmp_path / "fresh")
    kept = [corpus.texts[i] for i in range(18)]
    assert kept == [real_read(str(root / name))[0] for name in corpus.names]  # as text mode
    scanned.clear()
    again = _folder_dm(root, tmp_path)
    assert scanned == [] and opened == []  # fingerprints and token ids from the caches
    assert torch.equal(again.train_set[0].flat, first.train_set[0].flat)
    assert again.split_names == first.split_names
    (root / "sport" / "2.txt").write_text("   \n")  # changed: now blank
    with pytest.raises(DataError, match=r"sport/2.txt \(empty text\)"):
        _folder_dm(root, tmp_path)
    assert scanned == [str(root.resolve() / "sport" / "2.txt")] and opened == []
    (root / "sport" / "2.txt").write_text("a whole new text about football")
    scanned.clear()
    _folder_dm(root, tmp_path)  # a new text: new token ids, so every text is read, once
    changed = str(root.resolve() / "sport" / "2.txt")
    assert scanned == [changed] and len(opened) == len(set(opened)) == 17
    assert changed not in opened
