"""``dlexp-data``: the summary of an .npz, a class folder of images (a broken file, a duplicate
across splits, stray files), a folder of texts and a CSV table; one ``error:`` line for what
it cannot read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlexp.data_summary import main, scan_folder


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_npz_counts_per_class_and_part(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8),
             y_train=np.array(["cat", "dog", "dog"] * 10),
             x_test=rng.random((6, 8, 8)).astype(np.uint8), y_test=np.array(["cat", "dog"] * 3))
    code, out, err = _run([str(tmp_path / "d.npz"), "--out", str(tmp_path / "o")], capsys)
    assert code == 0 and err == ""
    summary = _summary(tmp_path / "o")
    assert summary["counts"] == {"cat": {"train": 10, "test": 3}, "dog": {"train": 20, "test": 3}}
    assert summary["arrays"]["train"]["x_shape"] == [30, 8, 8]
    assert summary["arrays"]["train"]["x_dtype"] == "uint8"
    assert 0 <= summary["arrays"]["train"]["x_min"] < summary["arrays"]["train"]["x_max"] <= 255
    assert "| dog | 20 | 3 | 23 |" in out
    with Image.open(tmp_path / "o" / "samples.png") as grid:
        assert grid.height > 2 * 64  # two classes, a row each


def _png(path: Path, value: int, size: tuple[int, int] = (12, 10), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0]), value, np.uint8)
    pixels[2:5, 2:5] = 255 - value
    Image.fromarray(pixels).convert(mode).save(path)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """train/{cat,dog} and test/{cat,dog}: one broken PNG, one test image that is a copy of a
    training image, an RGB JPEG of another size, and stray files."""
    root = tmp_path / "pets"
    for i in range(3):
        _png(root / "train" / "cat" / f"{i}.png", 10 + i)
        _png(root / "train" / "dog" / f"{i}.png", 100 + i)
    _png(root / "train" / "dog" / "big.jpg", 50, size=(40, 30), mode="RGB")
    _png(root / "test" / "cat" / "0.png", 200)
    (root / "test" / "dog").mkdir()
    shutil.copy(root / "train" / "dog" / "1.png", root / "test" / "dog" / "copy.png")
    (root / "test" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (root / "train" / "cat" / "Thumbs.db").write_bytes(b"\0" * 8)
    (root / ".DS_Store").write_bytes(b"\0" * 8)
    return root


def test_scan_folder_takes_splits_and_classes(image_folder: Path) -> None:
    items = scan_folder(image_folder)
    assert {(label, split) for _, label, split in items} == {
        ("cat", "train"), ("dog", "train"), ("cat", "test"), ("dog", "test")}
    assert len(items) == 10 and all(p.suffix in (".png", ".jpg") for p, _, _ in items)


def test_image_folder_summary_names_bad_and_duplicate_files(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_dir = tmp_path / "o"
    code, out, _ = _run([str(image_folder), "--out", str(out_dir)], capsys)
    assert code == 0
    summary = _summary(out_dir)
    assert summary["kind"] == "image folder" and summary["splits"] == ["train", "test"]
    assert summary["counts"] == {"cat": {"train": 3, "test": 1}, "dog": {"train": 4, "test": 2}}
    assert summary["image_sizes"] == {"12x10": 8, "40x30": 1}
    assert summary["modes"] == {"L": 8, "RGB": 1}
    (broken,) = summary["unreadable"]
    assert broken.startswith(str(image_folder / "test" / "dog" / "broken.png"))
    (dup,) = summary["duplicates"]
    assert sorted(dup["files"]) == [str(image_folder / "test/dog/copy.png"),
                                    str(image_folder / "train/dog/1.png")]
    assert dup["leak"] and not dup["conflict"]
    assert sorted(summary["not_data"]) == [str(image_folder / ".DS_Store"),
                                           str(image_folder / "train/cat/Thumbs.db")]
    assert "(in different splits: leakage)" in out and "unreadable (1)" in out
    with Image.open(out_dir / "samples.png") as grid:
        assert grid.height >= 2 * 64 and grid.width >= 4 * 64  # 2 classes, 4 dogs shown
    assert (out_dir / "summary.md").read_text() in out


def test_text_folder_and_csv_table_lengths(tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "reviews"
    for label, texts in (("pos", ["great fun", "loved it a lot"]), ("neg", ["dull", " "])):
        (root / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / label / f"{i}.txt").write_text(text)
    code, _, _ = _run([str(root), "--out", str(tmp_path / "a")], capsys)
    summary = _summary(tmp_path / "a")
    assert code == 0 and summary["kind"] == "text folder"
    assert summary["counts"] == {"neg": {"all": 2}, "pos": {"all": 2}}
    assert summary["words"] == {"min": 1, "median": 2, "max": 4}
    assert summary["unreadable"] == [f"{root / 'neg' / '1.txt'} (empty text)"]

    table = tmp_path / "tweets.csv"
    table.write_text("tweet,sentiment\nso good,pos\nbad bad day,neg\nso good,neg\nok,pos\n")
    code, out, _ = _run([str(table), "--out", str(tmp_path / "b"), "--text-column", "tweet"],
                        capsys)
    summary = _summary(tmp_path / "b")
    assert code == 0 and summary["label_column"] == "sentiment"
    assert summary["counts"] == {"neg": {"all": 2}, "pos": {"all": 2}}
    assert summary["words_per_class"]["neg"] == {"min": 2, "median": 2.5, "max": 3}
    assert summary["duplicates"] == [{"files": ["row 1", "row 3"], "leak": False,
                                      "conflict": True}]
    assert "(with different labels)" in out


@pytest.mark.parametrize("case", ["missing", "no_text_column", "no_classes", "unknown"])
def test_bad_input_is_one_error_line(tmp_path: Path, case: str,
                                     capsys: pytest.CaptureFixture) -> None:
    path = {"missing": tmp_path / "none", "no_text_column": tmp_path / "t.csv",
            "no_classes": tmp_path / "flat", "unknown": tmp_path / "x.docx"}[case]
    if case == "no_text_column":
        path.write_text("body,label\nhi,a\n")
    elif case == "no_classes":
        path.mkdir()
        _png(path / "lonely.png", 3)
    elif case == "unknown":
        path.write_text("")
    code, out, err = _run([str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and out == "" and err.startswith("error: ") and err.count("\n") == 1
    if case == "no_text_column":
        assert "its columns are body, label: name one with --text-column" in err


def test_image_table_summary_reads_the_files_it_names(
        image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = ["path,label,split", "train/cat/0.png,cat,train", "train/dog/1.png,dog,train",
            "train/dog/big.jpg,dog,train", "test/dog/copy.png,dog,test",
            "test/dog/broken.png,dog,test", f"{image_folder / 'test/cat/0.png'},cat,test",
            "train/cat/1.png,,train"]
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    out_dir = tmp_path / "o"
    code, out, _ = _run([str(image_folder / "labels.csv"), "--out", str(out_dir)], capsys)
    summary = _summary(out_dir)
    assert code == 0 and summary["kind"] == "image table" and summary["path_column"] == "path"
    assert summary["counts"] == {"cat": {"train": 1, "test": 1}, "dog": {"train": 2, "test": 2}}
    assert summary["image_sizes"] == {"12x10": 4, "40x30": 1}
    assert summary["unreadable"][0] == "row 7 (no label)"
    assert summary["unreadable"][1].startswith(str(image_folder / "test/dog/broken.png"))
    (dup,) = summary["duplicates"]
    assert dup["leak"] and sorted(dup["files"]) == [str(image_folder / "test/dog/copy.png"),
                                                    str(image_folder / "train/dog/1.png")]
    assert "image table: 6 files, 2 classes" in out and "columns: path 'path'" in out
    with Image.open(out_dir / "samples.png") as grid:
        assert grid.height >= 2 * 64

    (tmp_path / "t.jsonl").write_text(json.dumps({"image": str(image_folder / "train/cat/2.png"),
                                                  "class": 3}) + "\n")
    code, _, _ = _run([str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "j")], capsys)
    assert code == 0 and _summary(tmp_path / "j")["counts"] == {"3": {"all": 1}}
    code, _, err = _run([str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "k"),
                         "--path-column", "file"], capsys)
    assert code == 1 and "no path column 'file'" in err and err.count("\n") == 1
