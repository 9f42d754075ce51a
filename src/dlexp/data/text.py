"""Your own texts: ``data=text_table data.path=FILE`` (a CSV, TSV, JSON Lines or Parquet table
with a text and a label column) and ``data=text_folder data.root=DIR`` (``DIR/<class>/*.txt``,
or ``DIR/train|val|test/<class>/*.txt``: the aclImdb layout is one).

Labels are column values or folder names, sorted (integers by value); any number of classes
>= 2. Given splits (a ``split`` column, ``train/val/test`` folders) are honoured, the rest is a
seeded, stratified split by ``val_size``/``test_size``, or fold ``fold`` of ``folds``; the
split is written to the run directory as ``split/<part>.txt`` (row numbers or file paths).
Every text is read and checked before training: empty texts and missing labels end in one
``error:`` (or are left out, ``on_bad_file=skip``), as do classes with fewer than 2 examples,
fewer than 2 classes, and a class in val/test that training never sees. The tokenizer, token-id
cache, bucketed batches and unlabeled pool work as IMDB's (:mod:`dlexp.data.tokenized`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlexp import cluster
from dlexp.cache import user_cache_dir
from dlexp.data import splits
from dlexp.data import table as tables
from dlexp.data.arrays import resolve
from dlexp.data.folder import Manifest, OnRead, cached_fingerprints, read_files, size_and_mtime
from dlexp.data.pooled import check_choice
from dlexp.data.table import SUFFIXES, as_labels, find_column, num_rows, read_table
from dlexp.data.token_cache import cache_key, load_cache, save_cache
from dlexp.data.token_store import TokenStore
from dlexp.data.tokenized import TokenizedDataModule
from dlexp.data.tokenizer import encode, from_json, to_json
from dlexp.errors import DataError

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("text", "review", "sentence", "content")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "target")
SPLIT_COLUMN = "split"  # used when the table has it and data.split_column is not set
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test"}
UNLABELED = ("unlabeled", "unlabelled", "unsup")  # a table's split value for texts without label
PARTS = ("train", "val", "test", "unlabeled")
ON_BAD_FILE = ("error", "skip")
NOT_DATA = {"thumbs.db", "desktop.ini"}  # what file managers leave (hidden files are skipped)
SHOWN = 10  # bad texts named in the error
IMBALANCE = 5.0  # largest / smallest class count that gets a warning
CACHE_VERSION = 1
TOKENS_LAYOUT = {"version": None, "tokenizer": None, "flat": None, "offsets": None}


def default_cache_dir() -> Path:
    """``$DLEXP_CACHE_DIR``, else ``~/.cache/dlexp``: never inside the user's data folder,
    where a cache folder would read as one more class."""
    return user_cache_dir()


def run_dir() -> Path | None:
    """The run directory of the Hydra job this runs in (train.py's, eval.py's), if any."""
    from hydra.core.hydra_config import HydraConfig

    try:
        out = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    except Exception:  # composed without a run (hydra.compose): no output_dir
        return None
    return Path(out) if isinstance(out, str) and Path(out).is_dir() else None


# ---------------------------------------------------------------- reading
@dataclass
class Corpus:
    """The texts as read, one entry per table row or file, not yet checked: ``labels`` are
    raw class values (None: missing), ``splits`` the given split (None: to be drawn),
    ``names`` what messages and split files call each entry (a row number or a file path)."""

    source: str
    texts: list[str | None] | FileTexts = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    unlabeled: list[bool] = field(default_factory=list)
    problems: dict[int, str] = field(default_factory=dict)  # entry -> why it is unreadable
    classes: list[str] = field(default_factory=list)  # class folders, even empty ones
    label_names: list[str] | None = None  # multi-label: the labels; ``labels`` hold tuples
    # a folder's texts are known by their files' hashes and read only when needed (a warm
    # start takes its token ids from the cache); None: the texts themselves are the keys
    keys: list[str | None] | None = None
    blank: set[int] = field(default_factory=set)  # entries that are whitespace only (keys)

    def is_blank(self, i: int) -> bool:
        if self.keys is not None:
            return i in self.blank
        text = self.texts[i]
        return text is None or not text.strip()

    def texts_of(self, rows: Sequence[int]) -> Sequence[str]:
        """The texts of ``rows``, still unread when they come from files."""
        if isinstance(self.texts, FileTexts):
            return self.texts.take(rows)
        return [self.texts[i] for i in rows]

    def keys_of(self, rows: Sequence[int]) -> list[str]:
        """What tells the texts of ``rows`` apart without reading them: the file's content
        hash, else the text without surrounding whitespace."""
        if self.keys is not None:
            return [self.keys[i] or "" for i in rows]
        return [(self.texts[i] or "").strip() for i in rows]

    def add(self, name: str, text: str | None, label: Any, split: str | None,
            unlabeled: bool = False) -> None:
        self.names.append(name)
        self.texts.append(text)
        self.labels.append(label)
        self.splits.append(split)
        self.unlabeled.append(unlabeled)


def read_text_table(path: Path, text_column: str | None = None,
                    label_column: str | Sequence[str] | None = None,
                    split_column: str | None = None, label_sep: str | None = None) -> Corpus:
    """A table's texts, labels and (optional) given splits; entries are named ``row <i>``,
    ``i`` counting data rows from 0 (as pandas numbers them). Multi-label: ``label_sep``
    splits the label cells into label sets, or ``label_column`` lists one 0/1 column per
    label; the labels are then tuples and ``label_names`` the labels. Rows whose split is
    ``unlabeled`` are unlabeled texts (their label is not kept)."""
    table = read_table(path)
    source = str(path)
    text = find_column(table, text_column, TEXT_COLUMNS, "data.text_column", source)
    if not tables.is_multilabel(label_column, None):
        label = find_column(table, label_column, LABEL_COLUMNS, "data.label_column", source)
    else:
        label = tables.label_columns(table, label_column, source)
    if text == label if isinstance(label, str) else text in label:
        raise DataError(f"{source}: data.text_column and data.label_column both name {text!r}")
    split = find_column(table, split_column, (), "data.split_column", source) \
        if split_column is not None else next((c for c in table if c.lower() == SPLIT_COLUMN),
                                              None)
    corpus = Corpus(source)
    given = table[split] if split is not None else [None] * num_rows(table)
    labels = table[label] if isinstance(label, str) else None
    if isinstance(label, list):
        if label_sep is not None:
            raise DataError("data.label_sep splits one label column: give data.label_column "
                            "one name, or a list of 0/1 columns without data.label_sep")
        labels, corpus.label_names = tables.indicator_label_sets(table, label, source), label
    elif label_sep is not None:
        labels = tables.split_label_cells(labels, label_sep)
        corpus.label_names = tables.sorted_names(n for row in labels for n in row)
    for i, (t, y, s) in enumerate(zip(table[text], labels, given, strict=True)):
        unlabeled = isinstance(s, str) and s.strip().lower() in UNLABELED
        corpus.add(str(i), None if t is None else str(t), None if unlabeled else y,
                   None if unlabeled else _split_name(s, split, i, source), unlabeled)
    return corpus


def _split_name(value: Any, column: str | None, row: int, source: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    name = SPLIT_NAMES.get(str(value).strip().lower())
    if name is None:
        raise DataError(f"{source} row {row}: column {column!r} holds {value!r}; a split is "
                        "train, val, test or unlabeled (or empty: drawn by data.val_size/"
                        "test_size)")
    return name


class FileTexts(Sequence[str]):
    """Texts of files, read (all at once) when first asked for; ``known``: those already
    read (by the scan of a cold start), by position."""

    def __init__(self, paths: list[str], known: dict[int, str] | None = None) -> None:
        self.paths, self.known = paths, known or {}
        self._texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # noqa: ANN001, ANN204 (an index or a slice, as a list's)
        if self._texts is None:
            self._texts = [self.known[k] if k in self.known else _read_text(p)[0] or ""
                           for k, p in enumerate(self.paths)]
        return self._texts[i]

    def take(self, rows: Sequence[int]) -> FileTexts:
        return FileTexts([self.paths[i] for i in rows],
                         {k: self.known[i] for k, i in enumerate(rows) if i in self.known})

    def __iter__(self) -> Iterator[str]:
        return iter(self[:])


def text_probe(data: bytes) -> dict | None:
    """What the scan cache keeps of a text file: whether it is whitespace only."""
    return {"blank": True} if not data.decode("utf-8", "replace").strip() else None


def _as_text(data: bytes) -> str:
    """A file's bytes as :func:`_read_text` reads them (text mode: universal newlines)."""
    text = data.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


text_probe.version = "text-1"  # type: ignore[attr-defined]  # in the scan cache's key


def read_text_folder(root: Path, unlabeled_dirs: Sequence[str] = (),
                     cache_dir: Path | None = None) -> Corpus:
    """``root/<class>/**/*.txt``, or ``root/<split>/<class>/**/*.txt`` when ``root/train``
    holds class folders; the folders named in ``unlabeled_dirs`` (of the training side) hold
    unlabeled texts. Entries are named by their path relative to ``root``. The files are
    fingerprinted by :func:`dlexp.data.folder.fingerprint` (cached in ``cache_dir``: an
    unchanged file is not read again); their texts are read when first needed."""
    if not root.is_dir():
        raise DataError(f"data.root: no such folder {root}")
    corpus = Corpus(str(root))
    files: list[tuple[str, Any, str | None, bool]] = []  # (path relative to root, ...)
    ignored: list[str] = []
    for split, folder in _split_folders(root).items():
        for sub in _subfolders(folder):
            where = sub.relative_to(root).as_posix()
            if sub.name in unlabeled_dirs:
                if split in (None, "train"):
                    files += [(f, None, split, True) for f in _text_files(root, where, ignored)]
                else:  # unlabeled test texts in the pool would be training on the test set
                    ignored.append(f"{where}/")
                continue
            if split in (None, "train"):
                corpus.classes.append(sub.name)
            files += [(f, sub.name, split, False) for f in _text_files(root, where, ignored)]
    if not corpus.classes:
        raise DataError(f"no class folders in {root}: expected {root}/<class>/*.txt, or "
                        f"{root}/train/<class>/*.txt (and test/, val/)")
    if ignored:
        log.warning("%s: ignored %d entries that are not texts (.txt), e.g. %s", root,
                    len(ignored), ", ".join(ignored[:3]))
    base = f"{root}{os.sep}"
    for name, label, split, unlabeled in files:
        corpus.add(name, None, label, split, unlabeled)
    _fingerprint_texts(corpus, [base + name for name in corpus.names], cache_dir)
    return corpus


def _fingerprint_texts(corpus: Corpus, paths: list[str], cache_dir: Path | None) -> None:
    """The corpus's keys, blank and unreadable entries from its files' fingerprints; its
    texts left to read from ``paths`` when needed. The files the scan cache lacks are read
    here, in this process, and their texts kept: a cold start reads each file once."""
    stats = [size_and_mtime(p) for p in paths]
    manifest = Manifest(base=Path(corpus.source).resolve(), source=corpus.source,
                        rels=list(corpus.names), labels=[""] * len(paths),
                        sizes=[s[0] for s in stats], mtimes=[s[1] for s in stats])
    stale = cached_fingerprints(manifest, cache_dir, text_probe)
    known: dict[int, str] = {}

    def keep(pairs: list[tuple[int, bytes]]) -> dict:
        known.update((row, _as_text(data)) for row, data in pairs)
        return {}

    read_files(manifest, stale, cache_dir, text_probe, workers=0, on_read=OnRead(stale, keep))
    for i, (size, error, info) in enumerate(zip(manifest.sizes, manifest.errors,
                                                manifest.info, strict=True)):
        if size == 0 or info:
            corpus.blank.add(i)
        elif error is not None:
            corpus.problems[i] = f"unreadable: {error}"
    corpus.keys, corpus.texts = manifest.hashes, FileTexts(paths, known)


def _split_folders(root: Path) -> dict[str | None, Path]:
    """``{"train": root/train, ...}`` when ``root/train`` holds class folders, else
    ``{None: root}`` (class folders straight under root, nothing given)."""
    found: dict[str | None, Path] = {}
    for sub in _subfolders(root):
        split = SPLIT_NAMES.get(sub.name.lower())
        if split is None:
            continue
        if split in found:
            raise DataError(f"{root} has both {found[split].name}/ and {sub.name}/: keep one "
                            f"{split} folder")
        found[split] = sub
    if "train" not in found or not _subfolders(found["train"]):
        return {None: root}
    others = [s.name for s in _subfolders(root) if s.name.lower() not in SPLIT_NAMES]
    if others:
        log.warning("%s: split folders found, so these folders are not read: %s", root,
                    ", ".join(others))
    return found


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _text_files(root: Path, folder: str, ignored: list[str]) -> list[str]:
    """The ``.txt`` files under ``root/folder``, sorted, as paths relative to ``root`` (plain
    strings: pathlib would cost more than reading the files); anything else but hidden files
    and file-manager leftovers is added to ``ignored``."""
    found = []
    start = len(str(root)) + 1
    for top, dirs, names in os.walk(root / folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        where = top[start:].replace(os.sep, "/")
        for name in sorted(names):
            if name.lower().endswith(".txt"):
                found.append(f"{where}/{name}")
            elif not name.startswith(".") and name.lower() not in NOT_DATA:
                ignored.append(f"{where}/{name}")
    return found


def _read_text(path: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, why it cannot be read). Bytes that are not UTF-8 become U+FFFD,
    as IMDB's reader does."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(), None
    except OSError as e:
        return None, f"unreadable: {e.strerror or e}"


# ---------------------------------------------------------------- the datamodule
class TextDataModule(TokenizedDataModule):
    """Train/val/test and the unlabeled pool from a :class:`Corpus`, which a subclass reads in
    :meth:`_read`. Batches are ``((ids, lengths), labels)``; the tokenizer is fitted on the
    training split only and travels in :meth:`describe`, so predict works from the checkpoint.
    The unlabeled pool holds the training texts left out by ``num_labeled`` and the unlabeled
    texts (label -1)."""

    name = "text"

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        val_size: int | float = 0.1,
        test_size: int | float = 0.1,
        folds: int | None = None,
        fold: int = 0,
        seed: int = 0,
        num_labeled: int | None = None,
        on_bad_file: str = "error",
        tokenizer: dict | None = None,
        max_len: int | None = 400,
        truncate: str = "head",
        bucket: bool = True,
        bucket_chunk: int = 50,
        cache_dir: str | None = None,
        pin_memory: bool = False,
        unlabeled_ratio: float | None = None,
        test_only: bool = False,
        sampler: str | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, num_labeled, tokenizer, max_len,
                         truncate, bucket, bucket_chunk, pin_memory, unlabeled_ratio,
                         sampler=sampler)
        self.test_only = test_only
        self._trained: dict | None = None  # a checkpoint's data description (use_pipeline)
        check_choice("on_bad_file", on_bad_file, ON_BAD_FILE)
        if folds is not None:  # checked now, not after reading the data
            size = folds if isinstance(folds, int) and folds > 0 else 0
            splits.fold_split(torch.zeros(size, dtype=torch.long), folds, fold, seed)
        self.val_size, self.test_size, self.folds, self.fold = val_size, test_size, folds, fold
        self.on_bad_file = on_bad_file
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.class_names: list[str] = []
        self.num_classes = 0
        self.split_names: dict[str, list[str]] = {}
        self.skipped: list[tuple[str, str]] = []  # (entry, why) left out by on_bad_file=skip

    def _read(self) -> Corpus:
        raise NotImplementedError

    # ---------------------------------------------------------------- checks
    def _bad_entries(self, corpus: Corpus) -> dict[int, str]:
        """Entries that cannot be trained on: unreadable, empty, or labeled without a label.
        ``on_bad_file=error`` stops here, naming the first ones."""
        bad = dict(corpus.problems)
        for i, label in enumerate(corpus.labels):
            if i in bad:
                continue
            if corpus.is_blank(i):
                bad[i] = "empty text"
            elif corpus.label_names is None and not corpus.unlabeled[i] and \
                    as_labels([label]) == [None]:  # multi-label: no label is a label set
                bad[i] = "no label"
        if bad and self.on_bad_file == "error":
            shown = ", ".join(f"{self._entry(corpus, i)} ({why})" for i, why in
                              list(bad.items())[:SHOWN])
            more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
            raise DataError(f"{len(bad)} bad {'entry' if len(bad) == 1 else 'entries'} in "
                            f"{corpus.source}: {shown}{more}; fix or remove them, or set "
                            "data.on_bad_file=skip to train without them")
        return bad

    def _entry(self, corpus: Corpus, i: int) -> str:
        return corpus.names[i]

    def _label_sets(self, corpus: Corpus, labeled: list[int]) -> tuple[list, torch.Tensor]:
        """Multi-label :meth:`_classes`: the labels and multi-hot targets (N, C); at least 2
        labels, each on 2 or more texts (one may be drawn out of training) and on a training
        text of a given split."""
        names = corpus.label_names or []
        tables.check_label_names(names, corpus.source)
        y = tables.multi_hot([corpus.labels[i] for i in labeled], names)
        given = [corpus.splits[i] for i in labeled]
        training = y[[k for k, s in enumerate(given) if s in (None, "train")]]
        few = [n for n, c in zip(names, training.sum(0).tolist(), strict=True) if c < 2]
        if few:
            raise DataError(f"{corpus.source}: label {few[0]!r} is on fewer than 2 training "
                            "texts; each label needs at least 2 (add examples, or remove it)"
                            + (f"; also {len(few) - 1} more such labels" if len(few) > 1
                               else ""))
        return names, y

    def _classes(self, corpus: Corpus, labeled: list[int]) -> tuple[list, torch.Tensor]:
        """The sorted class values of the training side (rows not given as val/test, and class
        folders) and each labeled entry's class index; every class must have 2 examples there
        and every val/test label must be one of them."""
        values = as_labels([corpus.labels[i] for i in labeled] + corpus.classes)
        labels, folder_classes = values[:len(labeled)], values[len(labeled):]
        given = [corpus.splits[i] for i in labeled]
        training = [v for v, s in zip(labels, given, strict=True) if s in (None, "train")]
        classes = sorted(set(training) | set(folder_classes))
        if len(classes) < 2:
            found = f"only {classes[0]!r}" if classes else "none"
            raise DataError(f"{corpus.source}: classifying needs at least 2 classes in the "
                            f"training data, found {found}")
        counts = Counter(training)
        small = [c for c in classes if counts[c] < 2]
        if small:
            raise DataError(f"{corpus.source}: class {small[0]!r} has {counts[small[0]]} "
                            f"training example{'' if counts[small[0]] == 1 else 's'}; each class "
                            "needs at least 2 (add examples, or remove the class)"
                            + (f"; also {len(small) - 1} more such classes" if len(small) > 1
                               else ""))
        index = {c: k for k, c in enumerate(classes)}
        for pos, (value, split) in enumerate(zip(labels, given, strict=True)):
            if value not in index:
                raise DataError(f"{corpus.source}: {self._entry(corpus, labeled[pos])} of the "
                                f"{split} split has class {value!r}, which the training data "
                                "does not have: the model could never predict it")
        return classes, torch.tensor([index[v] for v in labels], dtype=torch.long)

    # ---------------------------------------------------------------- splits
    def _split(self, y: torch.Tensor, given: list[str | None]) -> dict[str, torch.Tensor]:
        """Positions into ``y`` of train, val and test: the given ones, the others drawn from
        the rest (stratified, seeded), or a fold of it."""
        at = {part: torch.tensor([i for i, s in enumerate(given) if s == part], dtype=torch.long)
              for part in ("train", "val", "test")}
        rest = torch.tensor([i for i, s in enumerate(given) if s in (None, "train")],
                            dtype=torch.long)
        n_rest, held = len(rest), {}
        for part, size in (("test", self.test_size), ("val", self.val_size)):
            if part == "val" and self.folds is not None:
                if len(at["val"]):
                    raise DataError("data.folds draws the validation folds from the training "
                                    "data, which already gives a val split: drop data.folds, "
                                    "or the val split")
                keep, out = splits.fold_split(y[rest], self.folds, self.fold, self.seed)
            elif len(at[part]):
                held[part] = at[part]
                continue
            else:
                n_out = splits.val_count(size, n_rest, f"{part}_size")
                if n_out >= len(rest):
                    raise DataError(f"data.val_size and data.test_size leave no training data "
                                    f"of {n_rest} examples")
                keep, out = splits.stratified_split(y[rest], n_out, self.seed)
            rest, held[part] = rest[keep], rest[out]
        if len(held["test"]) == 0:
            raise DataError("no test data: give a test split (a split column, a test/ folder) "
                            "or set data.test_size > 0")
        return {"train": rest, **held}

    # ---------------------------------------------------------------- setup
    def use_pipeline(self, info: dict, truncation: bool = True) -> None:
        """The checkpoint's tokenizer (:meth:`TokenizedDataModule.use_pipeline`); its classes
        too, for ``test_only`` (``dlexp-eval CKPT data.path=new.csv``)."""
        super().use_pipeline(info, truncation)
        self._trained = info

    def _setup_splits(self) -> None:
        corpus = self._read()
        if self.test_only:
            self._all_test(corpus)
            return
        bad = self._bad_entries(corpus)
        self.skipped = [(corpus.names[i], why) for i, why in bad.items()]
        if bad:
            log.warning("%s: left out %d bad entries (data.on_bad_file=skip), e.g. %s",
                        corpus.source, len(bad), ", ".join(n for n, _ in self.skipped[:3]))
        kept = [i for i in range(len(corpus.names)) if i not in bad]
        labeled = [i for i in kept if not corpus.unlabeled[i]]
        unlabeled = [i for i in kept if corpus.unlabeled[i]]
        self.multilabel = corpus.label_names is not None
        classes, y = (self._label_sets if self.multilabel else self._classes)(corpus, labeled)
        self.class_names = [str(c) for c in classes]
        self.num_classes = len(classes)
        part = self._split(y, [corpus.splits[i] for i in labeled])
        if self.multilabel:
            tables.check_train_labels(y[part["train"]], self.class_names, corpus.source)
        train_idx, pool_idx = splits.labeled_and_pool(y, part["train"], self.num_labeled,
                                                      self.seed)
        texts = corpus.texts_of(labeled + unlabeled)
        keys = corpus.keys_of(labeled + unlabeled)
        self._warn_about(corpus, keys, y, part, labeled)
        fit = part["train"].tolist()  # the whole training split, as IMDB's tokenizer sees it
        if self.tokenizer["use_unsup"] and self.given_tokenizer is None:
            if not unlabeled:
                raise DataError("data.tokenizer.use_unsup=true but the data has no unlabeled "
                                "texts (data.unlabeled_dirs); set it false")
            fit += range(len(labeled), len(texts))
        store = self._token_ids(texts, fit, keys if corpus.keys is not None else texts)
        extra = torch.arange(len(labeled), len(texts))
        self.train_set = (store.take(train_idx), y[train_idx])
        self.val_set = (store.take(part["val"]), y[part["val"]])
        self.test_set = (store.take(part["test"]), y[part["test"]])
        self.unlabeled_set = (store.take(torch.cat([pool_idx, extra])),
                              torch.cat([y[pool_idx], y.new_full((len(extra), *y.shape[1:]),
                                                                 -1)]))
        self.split_indices = {"train": train_idx, "val": part["val"], "test": part["test"],
                              "unlabeled": pool_idx}
        named = [corpus.names[i] for i in labeled]
        self.split_names = {p: [named[i] for i in part[p].tolist()] for p in ("val", "test")}
        self.split_names["train"] = [named[i] for i in train_idx.tolist()]
        self.split_names["unlabeled"] = [named[i] for i in pool_idx.tolist()] + \
            [corpus.names[i] for i in unlabeled]
        out = run_dir()
        if out is not None and cluster.is_rank_zero():
            self.write_split(out)

    def _all_test(self, corpus: Corpus) -> None:
        """Every labeled text is test data (``test_only``), encoded by the checkpoint's
        tokenizer and labeled in its class order (a new dataset to evaluate it on)."""
        if self._trained is None:
            raise DataError("data.test_only=true evaluates a checkpoint: dlexp-eval CKPT "
                            "data.path=... (or data.root=...) sets it, with the checkpoint's "
                            "tokenizer")
        bad = self._bad_entries(corpus)
        labeled = [i for i in range(len(corpus.names)) if i not in bad and not corpus.unlabeled[i]]
        names = [str(c) for c in self._trained["class_names"]]
        self.multilabel = corpus.label_names is not None
        if self.multilabel:  # label sets: each label one of the checkpoint's
            values = [label for i in labeled for label in corpus.labels[i]]
        else:
            values = [str(v) for v in as_labels([corpus.labels[i] for i in labeled])]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise DataError(f"{corpus.source}: classes {', '.join(map(repr, unknown[:SHOWN]))} "
                            f"are not the checkpoint's ({', '.join(names)})")
        if not labeled:
            raise DataError(f"{corpus.source}: no labeled texts to test on")
        self.class_names, self.num_classes = names, len(names)
        y = tables.multi_hot([corpus.labels[i] for i in labeled], names) if self.multilabel \
            else torch.tensor([names.index(v) for v in values], dtype=torch.long)
        self._set_tokenizer(self._trained["tokenizer"])
        store = encode(from_json(self.tokenizer_json), [corpus.texts[i] for i in labeled],
                       what=f"{self.name} texts").truncate(self.max_len, self.truncate)
        every, none = torch.arange(len(y)), torch.zeros(0, dtype=torch.long)
        self.train_set = self.val_set = self.unlabeled_set = (store.take(none), y[none])
        self.test_set = (store.take(every), y)
        self.split_indices = {"train": none, "val": none, "test": every, "unlabeled": none}

    def _warn_about(self, corpus: Corpus, keys: list[str], y: torch.Tensor,
                    part: dict[str, torch.Tensor], labeled: list[int]) -> None:
        """Log the class counts; warn about imbalance and about texts of val/test that are
        also training texts (leakage: the score would flatter the model). ``keys`` tell the
        texts apart (:meth:`Corpus.keys_of`)."""
        counts = (y[part["train"]].sum(0).long() if self.multilabel else
                  torch.bincount(y[part["train"]], minlength=self.num_classes)).tolist()
        shown = ", ".join(f"{c}: {n}" for c, n in zip(self.class_names, counts, strict=True))
        log.info("%s: %d %s; training examples per %s: %s; val %d, test %d",
                 corpus.source, self.num_classes, *(("labels", "label") if self.multilabel
                                                    else ("classes", "class")),
                 shown, len(part["val"]), len(part["test"]))
        if not self.multilabel and max(counts) >= IMBALANCE * max(min(counts), 1):
            log.warning("%s: the classes are imbalanced (%s): consider "
                        "loss=weighted_cross_entropy (weights from the training split) or "
                        "data.sampler=balanced (classes drawn equally often)",
                        corpus.source, shown)
        seen = {keys[i] for i in part["train"].tolist()}
        leaked = [self._entry(corpus, labeled[i]) for p in ("val", "test") for i in part[p].tolist()
                  if keys[i] in seen]
        if leaked:
            log.warning("%s: %d val/test texts are also training texts (the same text: "
                        "leakage), e.g. %s", corpus.source, len(leaked), ", ".join(leaked[:SHOWN]))

    def _token_ids(self, texts: Sequence[str], fit: list[int], ids: Sequence[str]
                   ) -> TokenStore:
        """Every text's token ids under a tokenizer fitted on ``texts[fit]`` (or the
        checkpoint's, :meth:`use_pipeline`): from the cache (keyed by ``ids``: the texts, or
        their files' hashes, so a cached folder's texts are never read), else built and
        cached; truncated to ``max_len`` after the cache."""
        digest = hashlib.sha256()
        for text in ids:
            data = text.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little") + data)
        digest.update(torch.tensor(fit, dtype=torch.long).numpy().tobytes())
        key = cache_key(version=CACHE_VERSION, **self.tokenizer_key(), texts=digest.hexdigest())
        path = self.cache_dir / "text" / f"tokens-{key}.pt"
        cached = load_cache(path, TOKENS_LAYOUT)
        if cached is None or cached["version"] != CACHE_VERSION:
            texts = list(texts)  # a folder's texts are read now
            tok = self._tokenizer_for((texts[i] for i in fit), len(fit))
            store = encode(tok, texts, what=f"{self.name} texts")
            cached = {"version": CACHE_VERSION, "tokenizer": to_json(tok), "flat": store.flat,
                      "offsets": store.offsets}
            try:
                save_cache(path, cached)
            except OSError as e:  # an unwritable cache costs the next run time, not this one
                log.warning("%s: cannot write the token cache %s (%s)", self.name, path, e)
        self._set_tokenizer(cached["tokenizer"])
        store = TokenStore(cached["flat"], cached["offsets"])
        self._log_unknown(store)
        return store.truncate(self.max_len, self.truncate)

    def write_split(self, out_dir: Path) -> None:
        """``split/<part>.txt`` (one entry per line: a table's row number, a folder's file
        path) and, when some were left out, ``bad_files.txt`` (entry, tab, why)."""
        files = {f"split/{p}.txt": self.split_names.get(p, []) for p in PARTS}
        if self.skipped:
            files["bad_files.txt"] = [f"{name}\t{why}" for name, why in self.skipped]
        try:
            for name, lines in files.items():
                path = out_dir / name
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
                tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
                tmp.replace(path)
        except OSError as e:
            log.warning("%s: cannot write the split to %s (%s)", self.name, out_dir, e)


class TextTableDataModule(TextDataModule):
    """``data=text_table``: a table's text column, label column and optional split column
    (values train/val/test; a column named ``split`` is used when present)."""

    name = "text_table"

    def __init__(
        self,
        path: str,
        root: str | None = None,
        text_column: str | None = None,
        label_column: str | Sequence[str] | None = None,
        label_sep: str | None = None,
        threshold: float = 0.5,
        split_column: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        val_size: int | float = 0.1,
        test_size: int | float = 0.1,
        folds: int | None = None,
        fold: int = 0,
        seed: int = 0,
        num_labeled: int | None = None,
        on_bad_file: str = "error",
        tokenizer: dict | None = None,
        max_len: int | None = 400,
        truncate: str = "head",
        bucket: bool = True,
        bucket_chunk: int = 50,
        cache_dir: str | None = None,
        pin_memory: bool = False,
        unlabeled_ratio: float | None = None,
        sampler: str | None = None,
        test_only: bool = False,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, val_size, test_size, folds, fold, seed,
                         num_labeled, on_bad_file, tokenizer, max_len, truncate, bucket,
                         bucket_chunk, cache_dir, pin_memory, unlabeled_ratio, test_only,
                         sampler=sampler)
        found = resolve(path, root)
        if found.suffix.lower() not in SUFFIXES:
            raise DataError(f"data.path={path}: not a table dlexp reads; use one of "
                            f"{', '.join(SUFFIXES)}")
        if not found.is_file():
            raise DataError(f"data.path: no such file {found}")
        self.path = str(found.resolve())
        self.text_column, self.split_column = text_column, split_column
        self.label_column = label_column if label_column is None or \
            isinstance(label_column, str) else [str(c) for c in label_column]
        self.label_sep, self.threshold = label_sep, threshold
        self.multilabel = tables.is_multilabel(self.label_column, label_sep)

    def _read(self) -> Corpus:
        return read_text_table(Path(self.path), self.text_column, self.label_column,
                               self.split_column, self.label_sep)

    def _entry(self, corpus: Corpus, i: int) -> str:
        return f"row {corpus.names[i]}"


class TextFolderDataModule(TextDataModule):
    """``data=text_folder``: one folder of ``.txt`` files per class, optionally under
    ``train/``, ``val/`` and ``test/``; ``unlabeled_dirs`` (aclImdb's ``unsup``) are not classes:
    their texts join the unlabeled pool."""

    name = "text_folder"

    def __init__(
        self,
        root: str,
        unlabeled_dirs: Sequence[str] | None = ("unsup",),
        batch_size: int = 64,
        eval_batch_size: int = 256,
        val_size: int | float = 0.1,
        test_size: int | float = 0.1,
        folds: int | None = None,
        fold: int = 0,
        seed: int = 0,
        num_labeled: int | None = None,
        on_bad_file: str = "error",
        tokenizer: dict | None = None,
        max_len: int | None = 400,
        truncate: str = "head",
        bucket: bool = True,
        bucket_chunk: int = 50,
        cache_dir: str | None = None,
        pin_memory: bool = False,
        unlabeled_ratio: float | None = None,
        sampler: str | None = None,
        test_only: bool = False,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, val_size, test_size, folds, fold, seed,
                         num_labeled, on_bad_file, tokenizer, max_len, truncate, bucket,
                         bucket_chunk, cache_dir, pin_memory, unlabeled_ratio, test_only,
                         sampler=sampler)
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.root: no such folder {folder}")
        self.root = str(folder.resolve())
        self.unlabeled_dirs = [str(d) for d in unlabeled_dirs or ()]

    def _read(self) -> Corpus:
        return read_text_folder(Path(self.root), self.unlabeled_dirs, self.cache_dir)
