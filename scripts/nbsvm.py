"""The baseline that keeps the text models honest: NB-weighted logistic regression on binary
unigrams and bigrams (NBSVM's LR variant; Wang & Manning 2012), on dlexp's IMDB split.

    python scripts/nbsvm.py [--source $DLEXP_DATA_DIR/aclImdb_v1.tar.gz] [--json out.json]

The split is ``data=imdb``'s: the same seeded 2,500 validation reviews out of the 25k training
ones, the official 25k test reviews. The vocabulary and the naive-Bayes ratios come from the
training part only; the regularisation strength is chosen on the validation part; the test
reviews are scored once, at the end. Words are split as dlexp's tokenizer splits them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import optimize, sparse

from dlexp.data import splits
from dlexp.data.imdb import ARCHIVE, FOLDER, assemble, read_archive, read_folder
from dlexp.errors import DataError

WORDS = re.compile(r"\w+|[^\w\s]+")  # the tokenizer's Whitespace() pre-tokenizer
BREAK = re.compile(r"<br\s*/?>")
C_GRID = (0.1, 0.3, 1.0)  # inverse L2 strength, chosen on the validation reviews


def words(text: str) -> list[str]:
    return WORDS.findall(BREAK.sub(" ", text.lower()))


def grams(text: str) -> set[str]:
    """The distinct unigrams and bigrams of a review (binary features)."""
    w = words(text)
    return set(w) | {f"{a} {b}" for a, b in zip(w, w[1:], strict=False)}


def vocabulary(docs: Sequence[set[str]]) -> dict[str, int]:
    """Every n-gram of the training reviews, numbered in sorted order (the same run to run)."""
    seen = set().union(*docs)
    return {g: i for i, g in enumerate(sorted(seen))}


def binary_matrix(docs: Sequence[set[str]], vocab: dict[str, int]) -> sparse.csr_matrix:
    """(reviews, n-grams) 0/1 matrix; n-grams outside the vocabulary are dropped."""
    cols = [[vocab[g] for g in d if g in vocab] for d in docs]
    indptr = np.cumsum([0] + [len(c) for c in cols])
    indices = np.fromiter((i for c in cols for i in c), dtype=np.int64, count=indptr[-1])
    data = np.ones(len(indices), dtype=np.float64)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(docs), len(vocab)))


def nb_ratios(x: sparse.csr_matrix, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """log((p / |p|_1) / (q / |q|_1)): how much each n-gram leans positive (Wang & Manning)."""
    p = alpha + np.asarray(x[y == 1].sum(axis=0)).ravel()
    q = alpha + np.asarray(x[y == 0].sum(axis=0)).ravel()
    return np.log(p / p.sum()) - np.log(q / q.sum())


def fit_logistic(x: sparse.csr_matrix, y: np.ndarray, c: float,
                 start: np.ndarray | None = None) -> np.ndarray:
    """L2-regularised logistic regression (weights, then bias), by L-BFGS on the exact loss,
    from ``start`` (the solution for a nearby ``c``) when given."""
    sign = 2.0 * y - 1.0

    def loss(wb: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = wb[:-1], wb[-1]
        margin = sign * (x @ w + b)
        value = np.logaddexp(0.0, -margin).sum() + 0.5 / c * (w @ w)
        g = -sign * 0.5 * (1.0 - np.tanh(margin / 2.0))  # -sign * sigmoid(-margin), stably
        return value, np.concatenate([x.T @ g + w / c, [g.sum()]])

    start = np.zeros(x.shape[1] + 1) if start is None else start
    done = optimize.minimize(loss, start, jac=True, method="L-BFGS-B",
                             options={"maxiter": 500})
    return done.x


def accuracy(x: sparse.csr_matrix, y: np.ndarray, wb: np.ndarray) -> float:
    return float(((x @ wb[:-1] + wb[-1] > 0) == (y == 1)).mean())


def load_split(source: Path, val_size: int, seed: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """``data=imdb``'s parts: train and val from the training reviews, the official test."""
    reviews = read_archive(source) if source.is_file() else read_folder(source)
    parts = assemble(reviews, source)
    texts, labels = parts["train"]
    train_idx, val_idx = splits.shuffled_split(len(labels), splits.val_count(val_size,
                                                                             len(labels)), seed)
    pick = lambda idx: ([texts[i] for i in idx.tolist()], labels[idx].numpy())  # noqa: E731
    return {"train": pick(train_idx), "val": pick(val_idx),
            "test": (parts["test"][0], parts["test"][1].numpy())}


def run(source: Path, val_size: int = 2500, seed: int = 42,
        grid: Sequence[float] = C_GRID) -> dict[str, float]:
    start = time.perf_counter()
    data = load_split(source, val_size, seed)
    docs = {part: [grams(t) for t in texts] for part, (texts, _) in data.items()}
    vocab = vocabulary(docs["train"])
    y = {part: labels for part, (_, labels) in data.items()}
    x = {part: binary_matrix(d, vocab) for part, d in docs.items()}
    r = nb_ratios(x["train"], y["train"])
    scaled = {part: m.multiply(r).tocsr() for part, m in x.items()}
    tried: dict[float, np.ndarray] = {}
    last = None
    for c in sorted(grid):  # each fit starts from the previous one's weights
        tried[c] = last = fit_logistic(scaled["train"], y["train"], c, start=last)
    val = {c: accuracy(scaled["val"], y["val"], wb) for c, wb in tried.items()}
    best = max(val, key=val.get)
    print("  validation accuracy by C: " + ", ".join(f"{c:g}: {a:.4f}" for c, a in val.items()),
          file=sys.stderr)
    return {"test/acc": accuracy(scaled["test"], y["test"], tried[best]), "val/acc": val[best],
            "C": best, "features": len(vocab), "fit_s": round(time.perf_counter() - start, 2)}


def default_source() -> Path:
    root = Path(os.environ.get("DLEXP_DATA_DIR", "data"))
    archive = root / ARCHIVE
    return archive if archive.is_file() else root / FOLDER


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=None,
                   help=f"{ARCHIVE} or an extracted {FOLDER}/ (default: under $DLEXP_DATA_DIR)")
    p.add_argument("--val-size", type=int, default=2500)
    p.add_argument("--seed", type=int, default=42, help="the validation split's seed (data=imdb's)")
    p.add_argument("--json", type=Path, default=None, help="write the metrics here")
    args = p.parse_args(argv)
    source = args.source or default_source()
    if not source.exists():
        sys.exit(f"error: no IMDB data at {source}; pass --source or set DLEXP_DATA_DIR")
    torch.set_num_threads(1)  # nothing here uses torch; keeps its import from spawning threads
    try:
        metrics = run(source, args.val_size, args.seed)
    except DataError as e:
        sys.exit(f"error: {e}")
    print(json.dumps(metrics))
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=1) + "\n")


if __name__ == "__main__":
    main()
