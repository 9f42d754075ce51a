"""Tables of your own data, read into plain columns: CSV and TSV (the ``csv`` module), JSON
Lines (``json``), Parquet (``pyarrow``, the ``dlexp[tables]`` extra). Nothing here knows what
the columns hold, so text tables (a text and a label column) and image tables (a path and a
label column) read them alike; :func:`find_column` picks a column by name or by the usual
names, and :func:`as_labels` turns a label column into sortable class values."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
