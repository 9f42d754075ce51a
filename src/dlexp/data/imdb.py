"""IMDB movie reviews (aclImdb v1) as a LightningDataModule of padded, length-bucketed batches.

The reviews are streamed straight from ``aclImdb_v1.tar.gz`` (measured 2.5 s for all 100k,
against 11 s to extract them first), or read from an extracted ``aclImdb/`` folder. Token ids
are cached under ``cache_dir``, so only the first run reads text at all. ``root`` may be
read-only: downloads, extraction and caches all go to ``cache_dir``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tarfile
import time
import zlib
from pathlib import Path

import torch
from tokenizers import Tokenizer

from dlexp.cache import user_cache_dir
from dlexp.data import splits
from dlexp.data.download import download, file_digest, safe_extract
from dlexp.data.token_cache import cache_key, load_cache, save_cache
from dlexp.data.token_store import TokenStore
from dlexp.data.tokenized import TOKENIZER, Part, TokenizedDataModule, tokenizer_settings
from dlexp.data.tokenizer import encode, from_json, to_json
from dlexp.errors import DataError

log = logging.getLogger(__name__)

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ARCHIVE, FOLDER = "aclImdb_v1.tar.gz", "aclImdb"
SHA256 = {
    "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe": "official tarball",
    # the offline copy in shared/data: the same reviews rebuilt byte-reproducibly from public
    # mirrors, without the bag-of-words *.feat files no model here reads (its README.md)
    "15efe61b046bab2235aba67dd0c29f9768a163a0b62ec53fbed7c6f03e292738": "offline rebuild",
}
OFFICIAL_SHA256 = next(iter(SHA256))
FOLDERS = ("train/neg", "train/pos", "test/neg", "test/pos", "train/unsup")
REVIEW = re.compile(r"(\d+)_(\d+)\.txt")  # <id>_<rating>.txt
MEMBER = re.compile(r"(?:\./)?aclImdb/((?:train|test)/(?:neg|pos|unsup))/(\d+)_\d+\.txt")
CACHE_VERSION = 2  # 2: train/unsup in a file of its own
PART_LAYOUT = {"flat": None, "offsets": None, "labels": None}  # one part of a token cache
TOKENS_LAYOUT = {"version": None, "tokenizer": None, "train": PART_LAYOUT, "test": PART_LAYOUT}

Reviews = dict[str, list[tuple[int, str]]]  # "train/pos" -> [(review id, text)]
__all__ = ["TOKENIZER", "IMDBDataModule", "Part"]


def default_root() -> str:
    return os.environ.get("DLEXP_DATA_DIR", "data")


def default_cache_dir(root: Path) -> Path:
    """``$DLEXP_CACHE_DIR``, else the data root when writable, else ``~/.cache/dlexp`` (CI
    mounts the shared data read-only)."""
    if env := os.environ.get("DLEXP_CACHE_DIR"):
        return Path(env).expanduser()
    existing = next(p for p in (root, *root.absolute().parents) if p.exists())
    return root if writable(existing) else user_cache_dir()


def writable(path: Path) -> bool:
    """access() says yes to root even on a folder chmod'ed read-only, so the owner's write bit
    counts too: data marked read-only stays untouched whoever runs."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & stat.S_IWUSR)


# ---------------------------------------------------------------- reading reviews
def read_archive(path: Path) -> Reviews:
    """Stream the reviews out of the tarball. Nothing is written, so member paths cannot
    escape anywhere; anything but ``aclImdb/<split>/<class>/<id>_<rating>.txt`` is skipped."""
    reviews: Reviews = {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if member.isfile() and (hit := MEMBER.fullmatch(member.name)):
                    text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                    reviews.setdefault(hit[1], []).append((int(hit[2]), text))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path} is not a readable tar archive ({e}); delete it and retry") from e
    return reviews


def read_folder(path: Path) -> Reviews:
    reviews: Reviews = {}
    for folder in FOLDERS:
        if not (path / folder).is_dir():
            continue
        found = reviews.setdefault(folder, [])
        for entry in os.scandir(path / folder):
            if hit := REVIEW.fullmatch(entry.name):
                with open(entry.path, encoding="utf-8", errors="replace") as f:
                    found.append((int(hit[1]), f.read()))
    return reviews


def assemble(reviews: Reviews, source: Path) -> dict[str, tuple[list[str], torch.Tensor]]:
    """Texts and labels of train, test and unsup, in id order (independent of the archive's
    or the file system's order): negatives (0) first, then positives (1); unsup are -1."""
    for folder in FOLDERS[:4]:
        if not reviews.get(folder):
            raise DataError(f"no reviews in {source}/{folder}: is it aclImdb v1? Delete it, or "
                            f"put the official {ARCHIVE} there instead")
    parts = {}
    for part, folders in (("train", ("train/neg", "train/pos")), ("test", ("test/neg", "test/pos")),
                          ("unsup", ("train/unsup",))):
        texts, labels = [], []
        for folder in folders:
            found = sorted(reviews.get(folder, []))
            texts += [text for _, text in found]
            labels += [{"neg": 0, "pos": 1}.get(folder[-3:], -1)] * len(found)
        parts[part] = (texts, torch.tensor(labels, dtype=torch.long))
    return parts


def fingerprint(source: Path) -> list:
    """Cheap identity of the data for the cache key: path, sizes and modification times."""
    paths = [source] if source.is_file() else [source / f for f in FOLDERS]
    return [str(source.resolve())] + [(s.st_size, s.st_mtime_ns) for s in
                                      (p.stat() for p in paths if p.exists())]


class IMDBDataModule(TokenizedDataModule):
    """Train/val from the 25k labeled training reviews (seeded shuffle), test = the official
    25k, the unlabeled pool = ``train/unsup`` (50k, ``include_unsup``) plus the labeled train
    reviews left out by ``num_labeled``. Batches are ``((ids, lengths), labels)``.

    The tokenizer is fitted on the training split only (never val or test text; ``train/unsup``
    too with ``tokenizer.use_unsup``), and travels in :meth:`describe` as a JSON string.
    """

    name = "imdb"
    num_classes = 2
    class_names = ["negative", "positive"]

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        val_size: int | float = 2500,
        seed: int = 0,
        num_labeled: int | None = None,
        include_unsup: bool = True,
        tokenizer: dict | None = None,
        max_len: int | None = 400,
        truncate: str = "head",
        bucket: bool = True,
        bucket_chunk: int = 50,
        cache_dir: str | None = None,
        extract: bool = False,
        pin_memory: bool = False,
        unlabeled_ratio: float | None = None,
        sampler: str | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, num_labeled, tokenizer, max_len,
                         truncate, bucket, bucket_chunk, pin_memory, unlabeled_ratio,
                         sampler=sampler)
        self.root = Path(root or default_root()).expanduser()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir \
            else default_cache_dir(self.root)
        self.download, self.val_size = download, val_size
        self.include_unsup, self.extract = include_unsup, extract

    _tokenizer_settings = staticmethod(tokenizer_settings)

    # ---------------------------------------------------------------- files
    def _find(self) -> Path | None:
        """An extracted folder (fastest to read), else a tarball, in root then cache_dir."""
        bases = dict.fromkeys((self.root, self.cache_dir))
        for base in bases:
            if (base / FOLDER / "train").is_dir():
                return base / FOLDER
        return next((b / ARCHIVE for b in bases if (b / ARCHIVE).is_file()), None)

    def prepare_data(self) -> None:
        source = self._find()
        if source is None:
            if not self.download:
                raise DataError(self._missing_message("data.download=false"))
            try:
                source = download([URL], self.cache_dir / ARCHIVE, OFFICIAL_SHA256, "sha256")
            except DataError as e:
                raise DataError(self._missing_message(str(e))) from None
        if self.extract and source.is_file():
            self._extract(source)

    def _missing_message(self, why: str) -> str:
        where = " and ".join(str(p.resolve()) for p in dict.fromkeys((self.root, self.cache_dir)))
        return (f"IMDB reviews not found: no {FOLDER}/ or {ARCHIVE} in {where} ({why}).\n"
                f"Put {ARCHIVE} (from {URL}) or its extracted {FOLDER}/ folder there, or point "
                f"data.root (or $DLEXP_DATA_DIR) at a folder holding one.")

    def _source(self) -> Path:
        source = self._find()
        if source is None or (self.extract and source.is_file()):
            self.prepare_data()  # raises the explanatory error when the files cannot be had
            source = self._find()
        return source

    def _check_archive(self, archive: Path) -> None:
        digest = file_digest(archive, "sha256")
        if digest not in SHA256:
            raise DataError(f"{archive} has sha256 {digest}, which is not {ARCHIVE}'s; delete it "
                            f"(data.download=true fetches the official one) or extract your "
                            f"copy to {archive.parent / FOLDER}/")

    def _extract(self, archive: Path) -> None:
        """Unpack into cache_dir; a crash midway leaves no half folder that looks complete."""
        self._check_archive(archive)
        work = self.cache_dir / f".{FOLDER}-extracting-{os.getpid()}"
        log.info("IMDB: extracting %s into %s", archive, self.cache_dir)
        try:
            safe_extract(archive, work)
            (work / FOLDER).replace(self.cache_dir / FOLDER)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # ---------------------------------------------------------------- token ids
    def _cache_path(self, source: Path, kind: str = "tokens", fitted: bool = False) -> Path:
        """``tokens-<key>.pt``: the tokenizer with train and test ids; ``unsup-<key>.pt``: the
        50k unlabeled reviews' ids under that tokenizer (built only when the pool is used).
        Keyed by the tokenizer used: the settings it is fitted by (and the split it is fitted
        on), or a given one (``use_pipeline``; ``fitted``: where these settings' would be)."""
        if self.given_tokenizer is None or fitted:
            used = {"tokenizer": self.tokenizer, "seed": self.seed, "val_size": self.val_size}
        else:
            used = self.tokenizer_key()
        key = cache_key(version=CACHE_VERSION, source=fingerprint(source), **used)
        return self.cache_dir / "imdb" / f"{kind}-{key}.pt"

    def _read_parts(self, source: Path) -> dict[str, tuple[list[str], torch.Tensor]]:
        if source.is_file():
            self._check_archive(source)
        log.info("IMDB: reading reviews from %s", source)
        return assemble(read_archive(source) if source.is_file() else read_folder(source), source)

    def _token_ids(self) -> dict:
        """Tokenizer JSON and the token ids of train and test: from the cache, else built (and
        cached) from the reviews."""
        source = self._source()
        paths = (self._cache_path(source), self._cache_path(source, fitted=True))
        for path in dict.fromkeys(paths):
            cached = load_cache(path, TOKENS_LAYOUT)
            # a given tokenizer may be the one these settings fit (dlexp-eval): that cache serves
            if cached is not None and cached["version"] == CACHE_VERSION and \
                    self.given_tokenizer in (None, cached["tokenizer"]):
                log.info("IMDB: token ids from cache %s", path)
                return cached
        path = self._cache_path(source)
        start = time.perf_counter()
        parts = self._read_parts(source)
        train_idx, _ = self._val_split(len(parts["train"][1]))
        corpus = [parts["train"][0][i] for i in train_idx.tolist()]
        if self.tokenizer["use_unsup"] and self.given_tokenizer is None:
            corpus += self._require_unsup(parts["unsup"][0], "data.tokenizer.use_unsup")
        tok = self._tokenizer_for(corpus, len(corpus))
        payload: dict = {"version": CACHE_VERSION, "tokenizer": to_json(tok),
                         **_encoded(tok, parts, ("train", "test"))}
        _save(path, payload)
        log.info("IMDB: tokenized %d reviews in %.1f s, cached in %s",
                 sum(len(parts[k][1]) for k in ("train", "test")), time.perf_counter() - start,
                 path)
        return payload

    def _unsup_ids(self) -> dict:
        """The ``train/unsup`` reviews' token ids under this run's tokenizer: from the cache,
        else encoded (and cached) now; only runs that use the unlabeled pool get here."""
        source = self._source()
        path = self._cache_path(source, "unsup")
        if (cached := load_cache(path, PART_LAYOUT)) is None:
            parts = self._read_parts(source)
            cached = _encoded(from_json(self.tokenizer_json), parts, ("unsup",))["unsup"]
            _save(path, cached)
        return cached

    def _require_unsup(self, items: list, flag: str) -> list:
        if not len(items):
            raise DataError(f"{flag}=true but the data has no train/unsup reviews; set it false")
        return items

    # ---------------------------------------------------------------- splits
    def _val_split(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return splits.shuffled_split(n, splits.val_count(self.val_size, n), self.seed)

    def _setup_splits(self) -> None:
        data = self._token_ids()
        self._set_tokenizer(data["tokenizer"])
        train, test = (self._part(data[k]) for k in ("train", "test"))
        self._log_unknown(train[0])
        y = train[1]
        train_idx, val_idx = self._val_split(len(y))
        train_idx, unlabeled_idx = splits.labeled_and_pool(y, train_idx, self.num_labeled,
                                                           self.seed)
        self.train_set = (train[0].take(train_idx), y[train_idx])
        self.val_set = (train[0].take(val_idx), y[val_idx])
        self.test_set = test
        # true labels, for evaluation; train/unsup joins on first use (see unlabeled_set)
        self._pool_from_train = (train[0].take(unlabeled_idx), y[unlabeled_idx])
        self._pool: Part | None = None
        self.split_indices = {"train": train_idx, "val": val_idx, "unlabeled": unlabeled_idx}

    @property
    def unlabeled_set(self) -> Part:
        """The unlabeled pool: labeled train reviews left out by ``num_labeled``, then
        ``train/unsup`` (``include_unsup``). Built when first asked for, so supervised runs
        never read or encode the 50k unsup reviews (~40% of a first run's data preparation)."""
        self.setup()
        if self._pool is None:
            pool = [self._pool_from_train]
            if self.include_unsup:
                unsup = self._part(self._unsup_ids())
                self._require_unsup(unsup[1], "data.include_unsup")
                pool.append(unsup)
            self._pool = (TokenStore.cat([p[0] for p in pool]), torch.cat([p[1] for p in pool]))
        return self._pool


def _encoded(tok: Tokenizer, parts: dict, names: tuple[str, ...]) -> dict:
    """Token ids of the named parts, in the cache's layout."""
    out = {}
    for name in names:
        texts, labels = parts[name]
        store = encode(tok, texts, what=f"IMDB {name} reviews")
        out[name] = {"flat": store.flat, "offsets": store.offsets, "labels": labels}
    return out


def _save(path: Path, payload: dict) -> None:
    try:
        save_cache(path, payload)
    except OSError as e:  # an unwritable cache costs the next run time, not this one
        log.warning("IMDB: cannot write the token cache %s (%s)", path, e)
