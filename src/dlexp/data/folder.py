"""Your own files as one manifest, shaped like torchvision's ``datasets/folder.py``: find the
classes, list (file, label) pairs. ``root/<class>/*`` or, when ``root/train`` exists,
``root/<split>/<class>/*``; or a table (CSV, TSV, JSONL, Parquet) with a path and a label
column. The scan fingerprints every file (size, mtime, content hash, readable or not) and
caches that, so an unchanged folder scans in a fraction of a second the second time.

The rest is what a run needs before training: the class checks, the split (given, seeded and
stratified, or k-fold) written as file lists beside the run and read back to reuse it,
duplicate files across splits (leakage), and the class counts."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dlexp.data import splits, table
from dlexp.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
JUNK_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"}
JUNK_FOLDERS = {"__macosx", "@eadir", "$recycle.bin"}  # archive and NAS debris
# folder names and split-column values -> the part they are
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test"}
PARTS = ("train", "val", "test")
SHOWN = 10  # files named in a message
IMBALANCE = 3.0  # largest / smallest training class above this gets a warning
CACHE_VERSION = 3  # 3: sha256 fingerprints (were blake2b); 2: the scan cache is one .npz
Probe = Callable[[bytes], dict]  # a file's bytes -> what the data module wants to know


@dataclass
class Manifest:
    """Files and their labels. ``rels`` name them relative to ``base`` (the folder, or the
    table's folder; a table may also name absolute paths), ``paths`` gives them absolute
    (plain strings: pathlib costs seconds on 70k files); ``given`` is each file's split when the
    layout or a split column names it. The scan fills the fingerprints: ``sizes``, ``mtimes``
    (ns), ``hashes`` (sha256 of the bytes, 128 bits), ``errors`` (why a file cannot be read, else None)
    and ``info`` (what the probe found)."""

    base: Path
    source: str
    rels: list[str]
    labels: list[str]
    given: list[str] | None = None
    junk: int = 0
    ignored: list[str] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    hashes: list[str | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    info: list[dict | None] = field(default_factory=list)
    from_lists: bool = False  # ``given`` read from split lists: an empty list is an empty part
    # multi-label tables: the label names, and ``labels`` holds each file's label set (tuples)
    label_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.rels)

    @property
    def paths(self) -> list[str]:
        base = str(self.base)
        return [os.path.join(base, r) for r in self.rels]

    @property
    def classes(self) -> list[str]:
        """Every label, sorted: by value when all are whole numbers, else alphabetically."""
        if self.label_names is not None:
            return self.label_names
        return sorted_labels(set(self.labels) | set(self.empty_classes))

    @property
    def multilabel(self) -> bool:
        return self.label_names is not None

    def targets(self) -> torch.Tensor:
        """Class indices (N,), or multi-hot float rows (N, C) for a multi-label table."""
        if self.label_names is not None:
            return table.multi_hot(self.labels, self.label_names)
        lookup = {name: i for i, name in enumerate(self.classes)}
        return torch.tensor([lookup[label] for label in self.labels], dtype=torch.long)

    def rel(self, i: int) -> str:
        return self.rels[i]

    def identity(self) -> list:
        """What a cache of this data depends on: every file, its size and its mtime."""
        return [list(f) for f in zip(self.rels, self.sizes, self.mtimes, strict=True)]

    def subset(self, keep: Sequence[int]) -> Manifest:
        """The files ``keep`` (positions), fingerprints and all."""
        def take(values: list) -> list:
            return [values[i] for i in keep] if values else values
        return replace(self, rels=take(self.rels), labels=take(self.labels),
                       given=take(self.given) if self.given is not None else None,
                       sizes=take(self.sizes), mtimes=take(self.mtimes),
                       hashes=take(self.hashes), errors=take(self.errors), info=take(self.info))


def sorted_labels(labels: Iterable[str]) -> list[str]:
    labels = list(labels)
    if labels and all(_is_int(v) for v in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


# ------------------------------------------------------------------------------ folders
def scan(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS,
         cache_dir: Path | None = None, probe: Probe | None = None,
         workers: int | None = None, read: bool = True) -> Manifest:
    """The files of ``root/<class>/...`` (or ``root/<split>/<class>/...`` when ``root/train``
    exists), fingerprinted (:func:`fingerprint`; ``read=False``: listed and stat'ed only, the
    caller fingerprints them). System files (``.DS_Store``, ``Thumbs.db``, dotfiles) are
    skipped and counted; other files are listed in ``ignored``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"data.root: {root} {what}; give a folder with one subfolder per class")
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    base = root.resolve()
    found = _Found(len(str(base)) + 1)
    if (root / "train").is_dir():
        for entry in _entries(str(base), found):
            part = SPLIT_NAMES.get(entry.name.lower()) if entry.is_dir() else None
            if part is None:
                found.ignored.append(entry.name)
                continue
            for class_dir in _entries(entry.path, found):
                _scan_class(class_dir, exts, found, part)
    else:
        for entry in _entries(str(base), found):
            _scan_class(entry, exts, found, None)
    order = sorted(range(len(found.rels)), key=found.rels.__getitem__)
    manifest = Manifest(
        base=base, source=str(root), rels=[found.rels[i] for i in order],
        labels=[found.labels[i] for i in order], junk=found.junk,
        given=[found.parts[i] for i in order] if found.parts and found.parts[0] else None,
        ignored=sorted(found.ignored), empty_classes=sorted(found.empty - set(found.labels)),
        sizes=[found.sizes[i] for i in order], mtimes=[found.mtimes[i] for i in order])
    report_skipped(manifest, exts)
    return fingerprint(manifest, cache_dir, probe, workers) if read else manifest


@dataclass
class _Found:
    cut: int  # characters of the root's path and its separator: entry.path[cut:] is relative
    rels: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    parts: list[str | None] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    junk: int = 0
    ignored: list[str] = field(default_factory=list)
    empty: set[str] = field(default_factory=set)


def _entries(folder: str, found: _Found) -> list[os.DirEntry]:
    """The folder's entries minus system files (counted), in no order (the scan sorts)."""
    kept = []
    with os.scandir(folder) as it:
        for entry in it:
            if _junk(entry):
                found.junk += 1
            else:
                kept.append(entry)
    return kept


def _junk(entry: os.DirEntry) -> bool:
    name = entry.name.lower()
    return name.startswith(".") or name in JUNK_FILES or name in JUNK_FOLDERS


def _scan_class(class_dir: os.DirEntry, exts: set[str], found: _Found,
                part: str | None) -> None:
    """Every file under one class folder (subfolders too, as torchvision's ImageFolder)."""
    if not class_dir.is_dir():
        found.ignored.append(_rel(class_dir.path, found))
        return
    label, before = class_dir.name, len(found.rels)
    stack = [class_dir.path]
    while stack:
        for entry in _entries(stack.pop(), found):
            if entry.is_dir():
                stack.append(entry.path)
            elif entry.name[entry.name.rfind("."):].lower() in exts:
                stat = entry.stat()
                found.rels.append(_rel(entry.path, found))
                found.labels.append(label)
                found.parts.append(part)
                found.sizes.append(stat.st_size)
                found.mtimes.append(stat.st_mtime_ns)
            else:
                found.ignored.append(_rel(entry.path, found))
    if len(found.rels) == before and (part in (None, "train")):
        found.empty.add(label)


def _rel(path: str, found: _Found) -> str:
    rel = path[found.cut:]
    return rel if os.sep == "/" else rel.replace(os.sep, "/")


def report_skipped(manifest: Manifest, exts: set[str] | None = None) -> None:
    """System files are counted at info level; other files left out get one warning."""
    if manifest.junk:
        log.info("%s: skipped %d system files (.DS_Store, Thumbs.db, dotfiles)",
                 manifest.source, manifest.junk)
    if manifest.ignored:
        wanted = f" (data.extensions: {' '.join(sorted(exts))})" if exts else ""
        log.warning("%s: ignored %d files that are not data files in class folders%s: %s",
                    manifest.source, len(manifest.ignored), wanted, _names(manifest.ignored))


def _names(items: Sequence[str], shown: int = SHOWN) -> str:
    more = f", ... ({len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


# ------------------------------------------------------------------------------ tables
def from_table(path: str | Path, path_column: str = "path",
               label_column: str | Sequence[str] = "label", split_column: str | None = None,
               cache_dir: Path | None = None, probe: Probe | None = None,
               workers: int | None = None, label_sep: str | None = None,
               read: bool = True) -> Manifest:
    """The files a table names: a path column (relative to the table's folder, or absolute),
    a label column and, when named or present as ``split``, a split column (train, val,
    test). CSV, TSV, JSONL (one object per line) or Parquet (needs pyarrow). Multi-label
    (:func:`dlexp.data.table.is_multilabel`): ``label_sep`` splits the label cells into label
    sets, or ``label_column`` lists one 0/1 column per label. ``read`` as :func:`scan`'s."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data.table: no such file {path}")
    rows, columns = read_table(path)
    if split_column is None and "split" in columns:
        split_column = "split"
    multilabel = table.is_multilabel(label_column, label_sep)
    for key, name in (("path_column", path_column),
                      ("label_column", None if multilabel else label_column),
                      ("split_column", split_column)):
        if name is not None and name not in columns:
            raise DataError(f"{path}: no column {name!r} (data.{key}); the columns are "
                            f"{', '.join(map(repr, columns))}")
    first = 2 if path.suffix.lower() in (".csv", ".tsv") else 1
    sets = _label_sets(rows, columns, label_column, label_sep, str(path), first) \
        if multilabel else None
    base = path.parent.resolve()
    rels, labels, given = [], [], []
    for n, row in enumerate(rows, start=first):
        file = row.get(path_column)
        label = sets[n - first] if sets is not None else _label(row.get(label_column))
        if file in (None, "") or (label is None and sets is None):
            missing = path_column if file in (None, "") else label_column
            raise DataError(f"{path}: row {n} has no {missing!r}; every row needs a file and "
                            "a label (drop unlabeled rows from the table)")
        rels.append(os.path.normpath(str(file)).replace(os.sep, "/"))
        labels.append(label)
        if split_column is not None:
            given.append(_split_value(row.get(split_column), path, n, split_column))
    stats = [size_and_mtime(os.path.join(base, r)) for r in rels]
    manifest = Manifest(base=base, source=str(path), rels=rels, labels=labels,
                        given=given or None, sizes=[s[0] for s in stats],
                        mtimes=[s[1] for s in stats],
                        label_names=_label_names(sets, label_column) if multilabel else None)
    return fingerprint(manifest, cache_dir, probe, workers) if read else manifest


def _label_sets(rows: list[dict], columns: list[str], label_column: str | Sequence[str],
                label_sep: str | None, source: str, first: int) -> list[tuple[str, ...]]:
    """Each row's labels: its label cell split at ``label_sep``, or the 0/1 columns that
    ``label_column`` lists which hold 1."""
    cells = {c: [row.get(c) for row in rows] for c in columns}
    if label_sep is not None and isinstance(label_column, str):
        if label_column not in cells:
            raise DataError(f"{source}: no column {label_column!r} (data.label_column); the "
                            f"columns are {', '.join(map(repr, columns))}")
        return table.split_label_cells(cells[label_column], label_sep)
    if label_sep is not None:
        raise DataError("data.label_sep splits one label column: give data.label_column one "
                        "name, or a list of 0/1 columns without data.label_sep")
    names = table.label_columns(cells, label_column, source)
    return table.indicator_label_sets(cells, names, source, first)


def _label_names(sets: list[tuple[str, ...]], label_column: str | Sequence[str]) -> list[str]:
    """The label columns as listed, or the labels the cells hold, sorted."""
    if not isinstance(label_column, str):
        return [str(c) for c in label_column]
    return table.sorted_names(label for labels in sets for label in labels)


def read_table(path: Path) -> tuple[list[dict], list[str]]:
    """(rows as dicts, column names) of a CSV, TSV, JSONL or Parquet file, as
    :func:`dlexp.data.table.read_table` reads it."""
    columns = table.read_table(path)
    n = len(next(iter(columns.values()), []))
    return [{name: values[i] for name, values in columns.items()} for i in range(n)], \
        list(columns)


def _label(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _split_value(value: object, path: Path, row: int, column: str) -> str:
    part = SPLIT_NAMES.get(str(value).strip().lower())
    if part is None:
        raise DataError(f"{path}: row {row} has {column}={value!r}; the split column holds "
                        "train, val or test")
    return part


def size_and_mtime(path: str) -> tuple[int, int]:
    """(size, mtime ns) of a file; (-1, 0) when it is gone."""
    try:
        s = os.stat(path)
        return s.st_size, s.st_mtime_ns
    except OSError:
        return -1, 0  # fingerprint() names it as missing


# ------------------------------------------------------------------------------ fingerprints
@dataclass
class OnRead:
    """Work a data module does on files' bytes while the scan holds them, so that a cold start
    reads each file once (``image_folder`` decodes there). ``rows``: the files it needs, read
    even when their fingerprints are cached (not those the scan found bad); ``fn`` runs in a
    worker on a chunk's (row, bytes) pairs and returns {row: (info, why)}: why (or None) for
    the files it could not use, gathered in ``bad``; with ``probes``, info is what the probe
    would say of the file, and a file without info is one the scan calls bad (why). It must be picklable (a ``functools.partial`` of a module-level
    function) where workers are not forked."""

    rows: Iterable[int]
    fn: Callable[[list[tuple[int, bytes]]], dict[int, tuple[dict | None, str | None]]]
    bad: dict[int, str] = field(default_factory=dict)
    probes: bool = False  # fn's info replaces the probe's for its rows (one parse of a file)


def fingerprint(manifest: Manifest, cache_dir: Path | None, probe: Probe | None = None,
                workers: int | None = None, on_read: OnRead | None = None) -> Manifest:
    """Content hash, readability and the probe's findings for every file, in parallel; files
    whose size and mtime match the cache are not read again."""
    stale = cached_fingerprints(manifest, cache_dir, probe)
    return read_files(manifest, stale, cache_dir, probe, workers, on_read)


def scan_cache_path(manifest: Manifest, cache_dir: Path | None, probe: Probe | None
                    ) -> Path | None:
    """Where the fingerprints of ``manifest``'s folder (or table) are cached, per probe."""
    if cache_dir is None:
        return None
    key = _cache_key(source=str(Path(manifest.source).resolve()),
                     probe=getattr(probe, "version", None) if probe else None)
    return cache_dir / "folders" / f"scan-{key}.npz"


def cached_fingerprints(manifest: Manifest, cache_dir: Path | None, probe: Probe | None = None
                        ) -> list[int]:
    """Fill ``manifest``'s fingerprints from the scan cache, for every file whose size and
    mtime it holds; returns the rows still to read (their fingerprints are None)."""
    cached = _read_scan_cache(scan_cache_path(manifest, cache_dir, probe))
    n = len(manifest)
    manifest.hashes, manifest.errors, manifest.info = [None] * n, [None] * n, [None] * n
    if cached is None:
        return list(range(n))
    if cached["rels"] == manifest.rels:  # the usual case: same files, compared as arrays
        rows = np.arange(n)
    else:
        where = {rel: i for i, rel in enumerate(cached["rels"])}
        rows = np.array([where.get(rel, -1) for rel in manifest.rels], dtype=np.int64)
    known = rows >= 0
    safe = np.where(known, rows, 0)
    same = known & (cached["sizes"][safe] == np.asarray(manifest.sizes, dtype=np.int64)) & \
        (cached["mtimes"][safe] == np.asarray(manifest.mtimes, dtype=np.int64))
    hashes, errors, infos = cached["hashes"], cached["errors"], cached["info"]
    for i in np.flatnonzero(same).tolist():
        r = int(rows[i])
        manifest.hashes[i], manifest.errors[i], manifest.info[i] = hashes[r], errors[r], infos[r]
    return np.flatnonzero(~same).tolist()


def read_files(manifest: Manifest, rows: Sequence[int], cache_dir: Path | None,
               probe: Probe | None = None, workers: int | None = None,
               on_read: OnRead | None = None) -> Manifest:
    """Fingerprint the files ``rows`` (and hand ``on_read`` the bytes of its rows), each file
    read once, in worker processes; the scan cache is written when a fingerprint changed."""
    wanted = set(on_read.rows) if on_read is not None else set()
    stale = set(rows)
    wanted -= {i for i in wanted - stale if manifest.errors[i] is not None}  # known bad
    todo = sorted(stale | wanted)
    if not todo:
        return manifest
    paths = manifest.paths
    jobs = [(i, paths[i], manifest.sizes[i], i in stale, i in wanted) for i in todo]
    work = functools.partial(_read_some, probe=probe,
                             use=on_read.fn if on_read is not None else None,
                             use_probes=on_read is not None and on_read.probes)
    for i, result, unusable in in_workers(work, jobs, workers, "scan"):
        if result is not None:
            manifest.hashes[i], manifest.errors[i], manifest.info[i] = result
        if unusable is not None:
            on_read.bad[i] = unusable
    if stale:
        _write_scan_cache(scan_cache_path(manifest, cache_dir, probe), manifest)
    return manifest


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


CHUNK = 256  # items per task of a worker


def in_workers(fn: Callable[[list], list], items: list, workers: int | None, desc: str
               ) -> list:
    """``fn`` over chunks of ``items``, the results concatenated in order: in ``workers``
    processes (default: one per core, at most 8; fork on Linux, so they start at once), or
    in this one for a single chunk or ``workers`` <= 1. A progress bar for large jobs."""
    chunks = [items[k:k + CHUNK] for k in range(0, len(items), CHUNK)]
    workers = default_workers() if workers is None else workers
    out: list[list] = [[] for _ in chunks]
    with tqdm(total=len(items), desc=desc, disable=True if len(items) < 2000 else None,
              leave=False) as bar:
        if workers <= 1 or len(chunks) <= 1:
            for k, chunk in enumerate(chunks):
                out[k] = fn(chunk)
                bar.update(len(chunk))
        else:
            context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
            with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
                futures = {pool.submit(fn, chunk): k for k, chunk in enumerate(chunks)}
                for future in as_completed(futures):
                    out[futures[future]] = future.result()
                    bar.update(len(chunks[futures[future]]))
    return [result for chunk in out for result in chunk]


def save_fingerprints(manifest: Manifest, cache_dir: Path | None, probe: Probe | None = None
                      ) -> None:
    """Write ``manifest``'s fingerprints to the scan cache (they were read piecemeal)."""
    _write_scan_cache(scan_cache_path(manifest, cache_dir, probe), manifest)


def _read_some(jobs: list[tuple[int, str, int, bool, bool]], probe: Probe | None,
               use: Callable | None, use_probes: bool = False) -> list:
    """(row, fingerprint or None, why ``use`` could not use it or None) per job (row, path,
    size, fingerprint it, hand its bytes to ``use``): one read of each file."""
    out, pairs, deferred = [], [], set()
    for row, path, size, fresh, wanted in jobs:
        defer = fresh and wanted and use_probes  # use probes it as it parses it
        data, result = _read_one(path, size, None if defer else probe, hashed=fresh)
        out.append([row, result if fresh else None, None])
        if wanted and data is not None and result[1] is None:
            pairs.append((row, data))
            if defer:
                deferred.add(row)
    found = use(pairs) if use is not None and pairs else {}
    for item in out:
        info, why = found.get(item[0], (None, None))
        if item[0] not in deferred:
            item[2] = why
        elif info is None:  # its header is bad: the scan's finding, cached
            item[1] = (item[1][0], why or "cannot read", None)
        else:
            item[1], item[2] = (item[1][0], None, info), why
    return [tuple(item) for item in out]


def _read_one(path: str, size: int, probe: Probe | None, hashed: bool = True
              ) -> tuple[bytes | None, tuple[str | None, str | None, dict | None]]:
    """(the bytes or None, (hash, error, probe info)) of one file."""
    if size < 0:
        return None, (None, "no such file", None)
    if size == 0:
        return None, (None, "empty file (0 bytes)", None)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, (None, f"cannot read: {e.strerror or e}", None)
    # sha256: the CPU's own instructions compute it on most current x86 and ARM chips, faster
    # than blake2b; the cold read of a folder hashes every byte of it
    digest = hashlib.sha256(data).hexdigest()[:32] if hashed else None
    if probe is None:
        return data, (digest, None, None)
    try:
        return data, (digest, None, probe(data))
    except ValueError as e:
        return data, (digest, str(e), None)


def _cache_key(**parts: object) -> str:
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_scan_cache(path: Path | None) -> dict | None:
    """The scan cache as lists (``rels``, ``hashes``, ``errors``, ``info``) and int64 arrays
    (``sizes``, ``mtimes``); None when absent, of another version, or unreadable (a half-written
    or foreign file: scanning again is the fix). Arrays only: nothing is unpickled."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                raise ValueError(f"version {int(z['version'])}")
            rels = z["rels"].tolist()
            sizes, mtimes = z["sizes"].astype(np.int64), z["mtimes"].astype(np.int64)
            hashes = [h or None for h in z["hashes"].tolist()]
            errors = [e or None for e in z["errors"].tolist()]
            kinds = [json.loads(k) for k in z["info_kinds"].tolist()]  # each distinct info once
            info = [kinds[k] if k >= 0 else None for k in z["info"].tolist()]
        if not len(rels) == len(sizes) == len(mtimes) == len(hashes) == len(errors) == len(info):
            raise ValueError("columns of different lengths")
    except Exception as e:  # any damage at all means: read the files again
        log.debug("scan cache %s not used (%s); scanning again", path, e)
        return None
    return {"rels": rels, "sizes": sizes, "mtimes": mtimes, "hashes": hashes,
            "errors": errors, "info": info}


def _write_scan_cache(path: Path | None, manifest: Manifest) -> None:
    """The fingerprints as one uncompressed ``.npz`` of plain arrays, written atomically."""
    if path is None:
        return
    kinds: dict[str, int] = {}
    info = [-1 if v is None else kinds.setdefault(json.dumps(v, sort_keys=True), len(kinds))
            for v in manifest.info]
    buffer = io.BytesIO()
    np.savez(buffer, version=np.array(CACHE_VERSION), rels=np.array(manifest.rels, dtype=str),
             sizes=np.array(manifest.sizes, dtype=np.int64),
             mtimes=np.array(manifest.mtimes, dtype=np.int64),
             hashes=np.array([h or "" for h in manifest.hashes], dtype=str),
             errors=np.array([e or "" for e in manifest.errors], dtype=str),
             info=np.array(info, dtype=np.int64), info_kinds=np.array(list(kinds), dtype=str))
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as e:  # a read-only cache costs the next run a rescan, nothing else
        log.debug("scan cache not written (%s)", e)


def write_atomic(path: Path, text: str | bytes) -> None:
    """A concurrent reader (another DDP rank, another run) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text)
    tmp.replace(path)


# ------------------------------------------------------------------------------ checks
def bad_files(manifest: Manifest) -> dict[int, str]:
    """Position -> why, for every file that cannot be used."""
    return {i: e for i, e in enumerate(manifest.errors) if e is not None}


def bad_files_error(manifest: Manifest, bad: dict[int, str]) -> DataError:
    shown = [f"{manifest.rel(i)} ({why})" for i, why in list(bad.items())[:SHOWN]]
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    them = "them" if len(bad) > 1 else "it"
    return DataError(f"{manifest.source}: {len(bad)} bad file{'s' if len(bad) > 1 else ''}: "
                     f"{'; '.join(shown)}{more}. Fix or remove {them}, or set "
                     f"data.on_bad_file=skip to train without {them}")


def write_bad_files(run_dir: Path | None, manifest: Manifest, bad: dict[int, str]) -> None:
    """``bad_files.txt`` in the run directory: one ``file<TAB>why`` line per skipped file."""
    log.warning("%s: skipping %d bad files (data.on_bad_file=skip): %s", manifest.source,
                len(bad), _names([manifest.rel(i) for i in bad]))
    if run_dir is not None and run_dir.is_dir():
        lines = "".join(f"{manifest.rel(i)}\t{why}\n" for i, why in bad.items())
        write_atomic(run_dir / "bad_files.txt", lines)


def check_classes(manifest: Manifest) -> None:
    """What would make training pointless or crash, each a one-line error with its fix: no
    files, fewer than 2 classes, a class with fewer than 2 training files, a class that only
    val or test holds."""
    if len(manifest) == 0 and not manifest.empty_classes:
        hint = f"; {len(manifest.ignored)} other files were ignored: " \
               f"{_names(manifest.ignored, 3)}" if manifest.ignored else ""
        raise DataError(f"{manifest.source}: no data files found: put them in one subfolder "
                        f"per class (<root>/<class>/<file>){hint}")
    if manifest.multilabel:
        check_labels(manifest)
        return
    given = manifest.given or ["train"] * len(manifest)
    train = Counter(lab for lab, part in zip(manifest.labels, given, strict=True)
                    if part == "train")
    for name in manifest.empty_classes:
        train.setdefault(name, 0)
    if len(manifest.classes) < 2:
        raise DataError(f"{manifest.source}: one class ({manifest.classes[0]!r}); classifying "
                        "needs at least 2: put each class's files in its own subfolder")
    few = [f"{name!r} ({n})" for name, n in sorted(train.items()) if n < 2]
    if few:
        raise DataError(f"{manifest.source}: class{'es' if len(few) > 1 else ''} "
                        f"{', '.join(few)} {'have' if len(few) > 1 else 'has'} fewer than 2 "
                        "training files: add files, or remove the class")
    for part in ("val", "test"):
        unseen = sorted_labels({lab for lab, p in zip(manifest.labels, given, strict=True)
                                if p == part} - set(train))
        if unseen:
            raise DataError(f"{manifest.source}: class {unseen[0]!r} is in {part} but not in "
                            "train: the model could never predict it; add training files of "
                            f"it, or remove it from {part}")


def check_labels(manifest: Manifest) -> None:
    """Multi-label: at least 2 labels; each label on at least 2 files (one for training, one
    that a drawn split may hold out) and on a training file when the split is given."""
    names = manifest.classes
    table.check_label_names(names, manifest.source)
    y = manifest.targets()
    given = manifest.given
    train = y if given is None else y[[i for i, g in enumerate(given) if g == "train"]]
    few = [n for n, c in zip(names, train.sum(0).tolist(), strict=True) if c < 2]
    if few and given is None:
        raise DataError(f"{manifest.source}: label{'s' if len(few) > 1 else ''} "
                        f"{', '.join(map(repr, few[:SHOWN]))} {'are' if len(few) > 1 else 'is'} "
                        "on fewer than 2 files: add files, or remove the label")
    table.check_train_labels(train, names, manifest.source)


# ------------------------------------------------------------------------------ splits
def split(manifest: Manifest, val_size: int | float, test_size: int | float, seed: int,
          folds: int | None = None, fold: int = 0) -> dict[str, torch.Tensor]:
    """Positions of ``train``, ``val`` and ``test``: the given split where the layout or the
    table names one; a part it does not name is a seeded, stratified split of the training
    files (``val_size``, ``test_size``: counts or fractions of them), or with ``folds`` the
    validation part is fold ``fold`` of a stratified k-fold split (the test part stays a
    stratified hold-out)."""
    y = manifest.targets()
    given = manifest.given
    if given is None:
        parts = {"train": torch.arange(len(manifest))}
    else:
        parts = {p: torch.tensor([i for i, g in enumerate(given) if g == p], dtype=torch.long)
                 for p in PARTS if p in given or manifest.from_lists}
        parts.setdefault("train", torch.zeros(0, dtype=torch.long))
        if manifest.from_lists:
            return parts
    if folds is not None and "val" in parts:
        raise ConfigError(f"data.folds: {manifest.source} has its own validation part; "
                          "k-fold splits the training files, so drop data.folds or the val "
                          "part")
    rest = parts["train"]
    n = len(rest)
    for part, size in (("test", test_size), ("val", val_size)):
        if part in parts:
            continue
        if part == "val" and folds is not None:
            kept, out = splits.fold_split(y[rest], folds, fold, seed)
        else:
            n_out = splits.val_count(size, n, f"{part}_size")
            if n_out >= len(rest):
                raise ValueError(f"data.val_size and data.test_size leave no training data of "
                                 f"{n} files")
            kept, out = splits.stratified_split(y[rest], n_out, seed)
        rest, parts[part] = rest[kept], rest[out]
    parts["train"] = rest
    if manifest.multilabel:
        table.check_train_labels(y[rest], manifest.classes, manifest.source)
    return parts


SPLIT_FOLDER = "split"


def split_lists_in(path: str | Path) -> Path | None:
    """The folder holding ``train.txt`` (and ``val.txt``, ``test.txt``): ``path`` itself, or
    its ``split/`` (a run directory); None when neither holds one."""
    path = Path(path).expanduser()
    for folder in (path, path / SPLIT_FOLDER):
        if (folder / "train.txt").is_file():
            return folder
    return None


def apply_split_lists(manifest: Manifest, folder: Path) -> Manifest:
    """The manifest with the split the lists in ``folder`` give: each listed file in its
    part; files the lists do not name are left out (a warning says how many); a listed file
    that is gone is an error (the folder changed since the split was written)."""
    where = {r: i for i, r in enumerate(manifest.rels)}
    given: dict[int, str] = {}
    for part in (*PARTS, "unlabeled"):
        file = folder / f"{part}.txt"
        names = [n for n in file.read_text().splitlines() if n] if file.is_file() else []
        missing = [n for n in names if n not in where]
        if missing:
            raise DataError(f"data.split_file: {len(missing)} files listed in {file} are not in "
                            f"{manifest.source} (first: {', '.join(missing[:3])}); the data "
                            "changed since the split was written: drop data.split_file to split "
                            "anew")
        given.update((where[n], "train" if part == "unlabeled" else part) for n in names)
    left_out = len(manifest) - len(given)
    if left_out:
        log.warning("%s: %d files are not in the split lists of %s and are left out",
                    manifest.source, left_out, folder)
    keep = sorted(given)
    out = manifest.subset(keep)
    out.given, out.from_lists = [given[i] for i in keep], True
    log.info("%s: split read from %s", manifest.source, folder)
    return out


def write_split(run_dir: Path | None, manifest: Manifest, parts: dict[str, torch.Tensor]
                ) -> None:
    """``split/train.txt``, ``val.txt``, ``test.txt`` (and ``unlabeled.txt``) in the run
    directory: one file per line, relative to the data's folder. ``data.split_file=`` that
    folder (or the run directory) reuses the split."""
    if run_dir is None or not run_dir.is_dir():
        return
    for part, positions in parts.items():
        if part == "unlabeled" and not len(positions):
            continue
        lines = "".join(f"{manifest.rel(i)}\n" for i in positions.tolist())
        write_atomic(run_dir / SPLIT_FOLDER / f"{part}.txt", lines)


def duplicates(manifest: Manifest, parts: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """(file, file) pairs with the same content in two different parts."""
    first: dict[str, tuple[str, int]] = {}
    pairs = []
    for part, positions in parts.items():
        for i in positions.tolist():
            digest = manifest.hashes[i]
            if digest is None:
                continue
            seen = first.setdefault(digest, (part, i))
            if seen[0] != part:
                pairs.append((manifest.rel(seen[1]), manifest.rel(i)))
    return pairs


def warn_duplicates(manifest: Manifest, parts: dict[str, torch.Tensor]) -> None:
    pairs = duplicates(manifest, {p: parts[p] for p in ("train", "val", "test") if p in parts})
    if pairs:
        log.warning("%s: %d files have the same content as a file in another split (leakage: "
                    "the score is measured on training data): %s", manifest.source, len(pairs),
                    _names([f"{a} = {b}" for a, b in pairs]))


def log_counts(manifest: Manifest, parts: dict[str, torch.Tensor]) -> None:
    """Files per class and part; a warning with the fix when the training classes are
    imbalanced."""
    names = manifest.classes
    y = manifest.targets()
    counts = {p: (y[pos].sum(0).long() if manifest.multilabel else
                  torch.bincount(y[pos], minlength=len(names))).tolist()
              for p, pos in parts.items() if len(pos)}
    log.info("%s: %d classes; files per class (%s): %s", manifest.source, len(names),
             "/".join(counts), ", ".join(f"{name} {'/'.join(str(c[k]) for c in counts.values())}"
                                          for k, name in enumerate(names)))
    train = counts.get("train")
    if manifest.multilabel:  # files per label; imbalance is the rule there
        return
    if train and min(train) > 0 and max(train) / min(train) > IMBALANCE:
        big, small = int(np.argmax(train)), int(np.argmin(train))
        log.warning("%s: imbalanced classes: %r has %d training files, %r has %d (%.0fx); "
                    "weight the loss by class with loss=weighted_cross_entropy, or draw the "
                    "classes equally often with data.sampler=balanced", manifest.source, names[big], train[big],
                    names[small], train[small], train[big] / train[small])
