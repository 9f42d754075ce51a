"""read_table on tiny CSV/TSV/JSONL/Parquet files, column look-up and label values."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

from dlexp.data.table import as_labels, find_column, num_rows, read_table
from dlexp.errors import DataError

ROWS = [{"text": "good, really", "label": "pos"}, {"text": 'said "bad"\nand left', "label": "neg"}]


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_keeps_quotes_commas_and_newlines(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "t.csv", '\ufefftext,label\n"good, really",pos\n\n'
                                          '"said ""bad""\nand left",neg\n')
    table = read_table(path)
    assert table == {"text": [r["text"] for r in ROWS], "label": ["pos", "neg"]}
    assert num_rows(table) == 2


def test_tsv_and_long_fields(tmp_path: Path) -> None:
    long = "word " * 40_000  # over the csv module's default field limit
    table = read_table(_write_csv(tmp_path / "t.tsv", f"review\tsentiment\n{long}\t1\n"))
    assert table["review"] == [long] and table["sentiment"] == ["1"]


def test_json_lines_keep_types_and_fill_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "a", "label": 2}) + "\n\n"
                    + json.dumps({"text": "b", "split": "test"}) + "\n")
    assert read_table(path) == {"text": ["a", "b"], "label": [2, None], "split": [None, "test"]}


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), path)
    assert read_table(path) == {"text": ["a", "b"], "label": [0, 1]}


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r'needs pyarrow.*pip install "dlexp\[tables\]"'):
        read_table(path)


@pytest.mark.parametrize(("name", "content", "match"), [
    ("t.csv", "text,label\na,b,c\n", r"line 2: 3 fields, the header has 2"),
    ("t.csv", "text,text\na,b\n", "names column 'text' twice"),
    ("t.csv", "", "no columns"),
    ("t.jsonl", '{"text": "a"}\n[1, 2]\n', "line 2: a JSON list, not an object"),
    ("t.jsonl", '{"text": "a"\n', "line 1: not JSON"),
    ("t.parquet", "not parquet", "cannot read .* as Parquet"),
    ("t.xlsx", "", "not a table dlexp reads; use one of .csv"),
])
def test_malformed_tables_are_one_clear_error(tmp_path: Path, name: str, content: str,
                                              match: str) -> None:
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = _write_csv(tmp_path / name, content)
    with pytest.raises(DataError, match=match):
        read_table(path)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "absent.csv")
    (tmp_path / "latin.csv").write_bytes(b"text,label\ncaf\xe9,1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_table(tmp_path / "latin.csv")


def test_find_column_by_name_or_usual_names() -> None:
    table = {"id": [], "Review": [], "label": []}
    usual = ("text", "review")
    assert find_column(table, None, usual, "data.text_column", "f.csv") == "Review"
    assert find_column(table, "id", usual, "data.text_column", "f.csv") == "id"
    with pytest.raises(DataError, match=r"no column 'body' \(data.text_column\); its columns: "
                                        r"'id', 'Review', 'label'"):
        find_column(table, "body", usual, "data.text_column", "f.csv")
    with pytest.raises(DataError, match=r"no column named text or review; its columns: 'id'.*"
                                        r"data.text_column=\.\.\."):
        find_column({"id": []}, None, usual, "data.text_column", "f.csv")


@pytest.mark.parametrize(("values", "labels"), [
    (["10", "2", " 3"], [10, 2, 3]),       # CSV integers sort by value, not as text
    ([1.0, 0.0, None], [1, 0, None]),      # Parquet's whole floats, a missing label
    (["pos", "neg", ""], ["pos", "neg", None]),
    ([1, "pos"], ["1", "pos"]),            # mixed: all text
    ([True, False], ["True", "False"]),
    ([float("nan"), 2], [None, 2]),
])
def test_as_labels(values: list, labels: list) -> None:
    assert as_labels(values) == labels
