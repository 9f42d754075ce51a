"""Pretrained word vectors for the text side of transfer learning, learned offline from the
50k *unlabeled* IMDB reviews (``train/unsup``), and with ``--with-train`` also from the 22.5k
training reviews of ``data=imdb``'s split (``--val-size``, ``--seed``: the language model's
72.5k): no labels, and never a validation or test review (their copies are left out).

    python scripts/word_vectors.py [--source $DLEXP_DATA_DIR/aclImdb_v1.tar.gz]
        [--out data/imdb_unsup_ppmi128.txt] [--dim 128] [--vocab 30000] [--window 5]
        [--with-train [--val-size 2500] [--seed 0]]

Method: positive pointwise mutual information of word co-occurrences within ``--window`` words
(weighted 1/distance, context counts smoothed with exponent 0.75), factorised by a truncated
SVD (Levy, Goldberg & Dagan 2015: as good as word2vec/GloVe at this scale). The file is in
GloVe's text format, so ``model.vectors=<file>`` reads it as it would read real GloVe vectors:

    python train.py data=imdb model=lstm model.vectors=data/imdb_unsup_ppmi128.txt model.freeze_embedding=true
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from dlexp.data import splits
from dlexp.data.imdb import ARCHIVE, FOLDER, Reviews, assemble, read_archive, read_folder
from dlexp.data.tokenizer import UNK_ID, encode, train_tokenizer
from dlexp.errors import DataError
from dlexp.models.word_vectors import write_word_vectors


def cooccurrences(flat: torch.Tensor, offsets: torch.Tensor, vocab: int, window: int
                  ) -> torch.Tensor:
    """Symmetric co-occurrence counts (weight 1/distance) as a coalesced sparse [V, V] matrix;
    pairs across review boundaries and the special tokens (pad, unk) are left out."""
    flat = flat.long()
    doc = torch.repeat_interleave(torch.arange(len(offsets) - 1), offsets.diff())
    keys, weights = [], []
    for d in range(1, window + 1):
        a, b = flat[:-d], flat[d:]
        ok = (doc[:-d] == doc[d:]) & (a > UNK_ID) & (b > UNK_ID)
        pair, count = torch.unique(a[ok] * vocab + b[ok], return_counts=True)
        keys.append(pair)
        weights.append(count.double() / d)
    pair, inverse = torch.unique(torch.cat(keys), return_inverse=True)
    total = torch.zeros(len(pair), dtype=torch.float64).index_add_(0, inverse, torch.cat(weights))
    rows, cols = pair // vocab, pair % vocab
    counts = torch.sparse_coo_tensor(torch.stack([rows, cols]), total, (vocab, vocab),
                                     check_invariants=False)
    return (counts + counts.t()).coalesce()


def ppmi(counts: torch.Tensor, alpha: float = 0.75) -> torch.Tensor:
    """Positive PMI of a sparse count matrix, with context counts smoothed by ``alpha``."""
    (rows, cols), values = counts.indices(), counts.values().double()
    word = torch.zeros(counts.shape[0], dtype=torch.float64).index_add_(0, rows, values)
    context = word.pow(alpha)
    pmi = (values.log() + values.sum().log() - word[rows].log()
           - (context[cols] / context.sum() * values.sum()).log())
    keep = pmi > 0
    return torch.sparse_coo_tensor(counts.indices()[:, keep], pmi[keep].float(), counts.shape,
                                   check_invariants=False)


def factorise(matrix: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """Rows of ``U * sqrt(S)`` from a randomised truncated SVD, scaled to unit variance per
    component like ``nn.Embedding``'s own N(0, 1) initialisation."""
    torch.manual_seed(seed)
    u, s, _ = torch.svd_lowrank(matrix, q=dim, niter=4)
    vectors = u * s.sqrt()
    return vectors / vectors[UNK_ID + 1:].std()


def find_source(data_dir: Path) -> Path:
    for candidate in (data_dir / ARCHIVE, data_dir / FOLDER):
        if candidate.exists():
            return candidate
    raise DataError(f"no {ARCHIVE} or {FOLDER}/ in {data_dir.resolve()}: pass --source or set "
                    "$DLEXP_DATA_DIR")


def corpus(reviews: Reviews, source: Path, with_train: bool, val_size: int, seed: int
           ) -> list[str]:
    """The unlabeled reviews, and with ``with_train`` the training split's (as ``data=imdb``
    draws it), less any copy of a validation or test review (aclImdb's unsup holds 270 of the
    test's)."""
    texts = [text for _, text in sorted(reviews.get("train/unsup", []))]
    if not with_train and not reviews.get("test/pos"):  # unsup only: nothing to compare with
        return texts
    parts = assemble(reviews, source)
    n = len(parts["train"][1])
    try:
        train_idx, val_idx = splits.shuffled_split(n, splits.val_count(val_size, n), seed)
    except ValueError as e:
        raise DataError(f"--val-size: {e}") from None
    if with_train:
        texts += [parts["train"][0][i] for i in train_idx.tolist()]
    held_out = set(parts["test"][0]) | {parts["train"][0][i] for i in val_idx.tolist()}
    return [t for t in texts if t not in held_out]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=None,
                   help=f"{ARCHIVE} or an extracted {FOLDER}/ (default: in $DLEXP_DATA_DIR)")
    p.add_argument("--out", type=Path, default=Path("data/imdb_unsup_ppmi128.txt"))
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--vocab", type=int, default=30_000)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--with-train", action="store_true",
                   help="also the training reviews of data=imdb's split (not its validation)")
    p.add_argument("--val-size", type=int, default=2500, help="data=imdb's data.val_size")
    p.add_argument("--seed", type=int, default=42, help="data=imdb's data.seed (train.py's seed)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        source = args.source or find_source(Path(os.environ.get("DLEXP_DATA_DIR", "data")))
        reviews = read_archive(source) if source.is_file() else read_folder(source)
        texts = corpus(reviews, source, args.with_train, args.val_size, args.seed)
        if not texts:
            raise DataError(f"{source} has no train/unsup reviews to learn from")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(texts)} reviews from {source}", file=sys.stderr)
    tok = train_tokenizer(texts, "word", args.vocab, args.min_count)
    store = encode(tok, texts)
    vocab = tok.get_vocab()
    print(f"{len(store.flat)} tokens, vocabulary {len(vocab)}; counting pairs ...",
          file=sys.stderr)
    counts = cooccurrences(store.flat, store.offsets, len(vocab), args.window)
    vectors = factorise(ppmi(counts), args.dim)
    words = sorted(vocab, key=vocab.get)
    keep = range(UNK_ID + 1, len(words))  # no vectors for the special tokens
    write_word_vectors(args.out, [words[i] for i in keep], vectors[UNK_ID + 1:])
    print(f"wrote {len(keep)} vectors of {args.dim} to {args.out} in "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
