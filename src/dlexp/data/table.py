"""Tables of your own data, read into plain columns: CSV and TSV (the ``csv`` module), JSON
Lines (``json``), Parquet (``pyarrow``, the ``dlexp[tables]`` extra). Nothing here knows what
the columns hold, so text tables (a text and a label column) and image tables (a path and a
label column) read them alike; :func:`find_column` picks a column by name or by the usual
names, and :func:`as_labels` turns a label column into sortable class values. Multi-label
tables (a delimiter in the label cells, or one 0/1 column per label) become label sets and
multi-hot targets (:func:`split_label_cells`, :func:`indicator_label_sets`, :func:`multi_hot`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from dlexp.errors import DataError

Table = dict[str, list[Any]]  # column name -> one value per row, in file order
DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_LINES = (".jsonl", ".ndjson")
PARQUET = (".parquet", ".pq")
SUFFIXES = (*DELIMITERS, *JSON_LINES, *PARQUET)
INSTALL = 'pip install "dlexp[tables]"'
FIELD_LIMIT = 2**31 - 1  # the csv module's default (128 KiB) is shorter than some reviews


def read_table(path: str | Path) -> Table:
    """Every column of the table at ``path``, chosen by its suffix (see :data:`SUFFIXES`).
    CSV/TSV values are strings (the header row names the columns); JSON Lines and Parquet
    values keep their types, a key missing from a JSON line is None. DataError, naming the
    file and the line, for anything that is not a well-formed table."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: not a table dlexp reads; use one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"no such file {path}")
    try:
        if suffix in DELIMITERS:
            table = _read_delimited(path, DELIMITERS[suffix])
        elif suffix in JSON_LINES:
            table = _read_json_lines(path)
        else:
            table = _read_parquet(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if not table:
        raise DataError(f"{path} has no columns")
    return table


def _read_delimited(path: Path, delimiter: str) -> Table:
    csv.field_size_limit(FIELD_LIMIT)
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
        rows = csv.reader(f, delimiter=delimiter, strict=True)
        try:
            header = next(rows, None)
            if header is None:
                return {}
            _check_header(header, path)
            table: Table = {name: [] for name in header}
            columns = list(table.values())
            for row in rows:
                if not row:  # a blank line
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path} line {rows.line_num}: {len(row)} fields, the header "
                                    f"has {len(header)} (a quote or delimiter out of place?)")
                for column, value in zip(columns, row, strict=True):
                    column.append(value)
        except csv.Error as e:
            raise DataError(f"{path} line {rows.line_num}: {e}") from None
    return table


def _check_header(header: list[str], path: Path) -> None:
    seen = set()
    for name in header:
        if not name.strip():
            raise DataError(f"{path}: the header row has an empty column name")
        if name in seen:
            raise DataError(f"{path}: the header row names column {name!r} twice")
        seen.add(name)


def _read_json_lines(path: Path) -> Table:
    """One JSON object per line; the columns are every key seen, in order of first sight."""
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {number}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {number}: a JSON {type(row).__name__}, not an "
                                "object ({\"column\": value, ...})")
            rows.append(row)
    names = list(dict.fromkeys(key for row in rows for key in row))
    return {name: [row.get(name) for row in rows] for name in names}


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"reading {path} (Parquet) needs pyarrow, which is not installed: "
                        f"{INSTALL}") from None
    try:
        return pq.read_table(path).to_pydict()
    except OSError:
        raise
    except Exception as e:  # pyarrow's ArrowInvalid and friends: not a Parquet file
        raise DataError(f"cannot read {path} as Parquet: {' '.join(str(e).split())}") from None


def num_rows(table: Table) -> int:
    return len(next(iter(table.values()), []))


def find_column(table: Table, given: str | None, usual: Sequence[str], key: str,
                source: str) -> str:
    """The column ``given`` (exactly as named), else the first of the ``usual`` names the
    table has (in any case). ``key`` is the setting that names it (``data.text_column``)."""
    found = ", ".join(map(repr, table))
    if given is not None:
        if given not in table:
            raise DataError(f"{source} has no column {given!r} ({key}); its columns: {found}")
        return given
    lowered = {name.lower(): name for name in reversed(list(table))}
    for name in usual:
        if name in lowered:
            return lowered[name]
    raise DataError(f"{source}: no column named {' or '.join(usual)}; its columns: {found}. "
                    f"Name the right one with {key}=...")


def as_labels(values: Sequence[Any]) -> list[int | str]:
    """Class values that sort as a user expects: integers by value (also when a CSV holds
    them as text, or Parquet as whole floats), anything else as text. None stays None (a
    missing label, for the caller to report); so does an empty string."""
    present = [v for v in values if not _missing(v)]
    if present and all(_whole(v) for v in present):
        return [None if _missing(v) else int(v) for v in values]  # int(' 7') == 7
    return [None if _missing(v) else str(v) for v in values]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or \
        (isinstance(value, float) and value != value)  # NaN: Parquet's or pandas' missing


def _whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, str):
        text = value.strip()
        return text.lstrip("+-").isdigit() and text.isascii()
    return False


# ------------------------------------------------------------------------------ multi-label
TRUE_VALUES, FALSE_VALUES = {"1", "true", "yes"}, {"0", "false", "no"}
LabelSet = tuple[str, ...]  # one row's labels, sorted (empty: no label)


def is_multilabel(label_column: Any, label_sep: str | None) -> bool:
    """Multi-label when a delimiter splits the label cells, or several label columns are
    named (``data.label_column=[toxic,insult]``)."""
    return label_sep is not None or not (label_column is None or isinstance(label_column, str))


def label_columns(table: Table, given: Any, source: str) -> list[str]:
    """The named 0/1 label columns (a list, two or more), each checked to be in the table."""
    names = [str(c) for c in given]
    if len(names) < 2:
        raise DataError(f"data.label_column={names}: name 2 or more 0/1 columns (one label "
                        "each), or one column with data.label_sep")
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(f"{source} has no column {', '.join(map(repr, missing))} "
                        f"(data.label_column); its columns: {', '.join(map(repr, table))}")
    return names


def split_label_cells(values: Sequence[Any], sep: str) -> list[LabelSet]:
    """Each cell split at ``sep`` into its labels (blanks dropped); an empty cell is no label.
    Whole floats (Parquet's ``3.0``) read as integers, like :func:`as_labels`."""
    if not isinstance(sep, str) or not sep:
        raise DataError(f"data.label_sep must be a non-empty string such as ',', got {sep!r}")
    out = []
    for v in values:
        cell = "" if _missing(v) else str(int(v)) if isinstance(v, float) and v.is_integer() \
            else str(v)
        out.append(tuple(sorted({p.strip() for p in cell.split(sep) if p.strip()})))
    return out


def indicator_label_sets(table: Table, columns: Sequence[str], source: str,
                         first_row: int = 0) -> list[LabelSet]:
    """Per row, the columns holding 1 (or true/yes); 0/false/no is absent. Anything else,
    blank included, is an error naming the row and column (``first_row``: the first row's
    number in messages)."""
    flags = []
    for name in columns:
        column = []
        for row, value in enumerate(table[name], first_row):
            flag = _flag(value)
            if flag is None:
                raise DataError(f"{source} row {row}: column {name!r} holds {value!r}; a label "
                                "column holds 0 or 1 (or true/false)")
            column.append(flag)
        flags.append(column)
    return [tuple(n for n, f in zip(columns, row, strict=True) if f) for row in zip(*flags, strict=True)]


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower() if isinstance(value, str) else ""
    return True if text in TRUE_VALUES else False if text in FALSE_VALUES else None


def sorted_names(names: Iterable[str]) -> list[str]:
    """Label names sorted as classes are: by value when all are whole numbers."""
    names = sorted(set(names))
    if names and all(_whole(n) for n in names):
        return sorted(names, key=int)
    return names


def multi_hot(sets: Sequence[LabelSet], names: Sequence[str]) -> torch.Tensor:
    """Float targets (N, C): 1 where row n has label c."""
    index = {name: k for k, name in enumerate(names)}
    y = torch.zeros(len(sets), len(names))
    for n, labels in enumerate(sets):
        y[n, [index[label] for label in labels]] = 1.0
    return y


def check_label_names(names: Sequence[str], source: str) -> None:
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise DataError(f"{source}: multi-label classification needs at least 2 labels, found "
                        f"{found}")


def check_train_labels(y: torch.Tensor, names: Sequence[str], source: str) -> None:
    """Refuse a label no training example has: its target is always 0 there, so the model
    learns never to predict it, and its F1 and average precision are undefined."""
    absent = [names[k] for k in (y.sum(0) == 0).nonzero().flatten().tolist()]
    if absent:
        raise DataError(f"{source}: label{'s' if len(absent) > 1 else ''} "
                        f"{', '.join(map(repr, absent[:10]))} never occur"
                        f"{'' if len(absent) > 1 else 's'} in the training split: the model "
                        "could never predict them; add training examples, or remove the label")
