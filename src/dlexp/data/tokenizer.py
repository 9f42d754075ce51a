"""Tokenization with HuggingFace ``tokenizers``: train, serialise, encode.

A tokenizer travels as its JSON string (``Tokenizer.to_str``), so a checkpoint carries it as
plain data and ``predict`` rebuilds exactly the encoding used in training from the checkpoint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from dlexp.data.token_store import TokenStore, offsets_of

log = logging.getLogger(__name__)

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1  # the trainers number special tokens first, in this order
MODELS = ("word", "bpe")
ENCODE_CHUNK = 10_000  # reviews per encode_batch call: bounds memory, paces the progress log
CHARS_PER_TOKEN = 8  # first guess at the characters max_len tokens take (English: ~5); grown x4
# the Unicode White_Space set, which the tokenizer's (Rust) regexes call \s; Python's \s also
# counts \x1c-\x1f, and a cut there could split what the tokenizer sees as one chunk
WS = "\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CHUNK = re.compile(f"[^{WS}]*[{WS}]*")  # one chunk and the whitespace after it


def new_tokenizer(model: str = "word") -> Tokenizer:
    r"""An untrained tokenizer: lowercase, ``<br />`` tags to spaces, words split from
    punctuation (``\w+|[^\w\s]+``: "great!!" -> "great", "!!"; "don't" -> "don", "'", "t")."""
    if model not in MODELS:
        raise ValueError(f"data.tokenizer.model must be one of {', '.join(MODELS)}, got {model!r}")
    tok = Tokenizer(models.WordLevel(unk_token=UNK) if model == "word"
                    else models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([
        normalizers.Lowercase(), normalizers.Replace(Regex(r"<br\s*/?>"), " ")])
    # Whitespace() rather than Punctuation(): a third faster, and runs such as "!!!" or "..."
    # stay one token, which carries sentiment
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return _text_only(tok)


def _text_only(tok: Tokenizer) -> Tokenizer:
    """A review quoting "[PAD]" must not become the pad id. The flag is not in the JSON, so
    every tokenizer is made through here."""
    tok.encode_special_tokens = True
    return tok


def train_tokenizer(texts: Iterable[str], model: str = "word", vocab_size: int = 20_000,
                    min_frequency: int = 2) -> Tokenizer:
    """Fit the vocabulary on ``texts``. Same texts in the same order give the same JSON:
    both trainers break frequency ties by the token itself, not by hash order."""
    if vocab_size < 3:
        raise ValueError(f"data.tokenizer.vocab_size must be >= 3, got {vocab_size}")
    tok = new_tokenizer(model)
    cls = trainers.WordLevelTrainer if model == "word" else trainers.BpeTrainer
    trainer = cls(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                  special_tokens=[PAD, UNK])
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def to_json(tok: Tokenizer) -> str:
    return tok.to_str()


def from_json(text: str) -> Tokenizer:
    return _text_only(Tokenizer.from_str(text))


def encode(tok: Tokenizer, texts: Sequence[str], what: str = "") -> TokenStore:
    """Token ids of every text as a :class:`TokenStore`; an empty text becomes ``[UNK]`` so
    every sequence has a length of at least 1."""
    parts, lengths = [], []
    for start in range(0, len(texts), ENCODE_CHUNK):
        # encode_batch_fast skips the offsets we never use, and runs on all cores
        batch = tok.encode_batch_fast(list(texts[start:start + ENCODE_CHUNK]),
                                      add_special_tokens=False)
        ids = [e.ids or [UNK_ID] for e in batch]
        sizes = [len(i) for i in ids]
        parts.append(np.fromiter(chain.from_iterable(ids), np.int32, count=sum(sizes)))
        lengths.extend(sizes)
        if what and len(texts) > ENCODE_CHUNK:
            log.info("encoding %s: %d/%d", what, min(start + ENCODE_CHUNK, len(texts)), len(texts))
    flat = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0, dtype=torch.int32)
    return TokenStore(flat, offsets_of(torch.tensor(lengths, dtype=torch.long)))


def encode_texts(description: dict, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode raw texts exactly as training did, from a datamodule's ``describe()`` alone
    (what ``predict`` has): returns padded ids [B, T] (0 = pad) and lengths [B]."""
    tok, max_len, mode = from_json(description["tokenizer"]), description["max_len"], \
        description["truncate"]
    return pad_ids([encode_truncated(tok, t, max_len, mode) or [UNK_ID] for t in texts])


def pad_ids(ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids [B, T] padded with 0 and lengths [B], as the text loaders batch them."""
    store = _store(ids)
    return store.pad(torch.arange(len(store)))


def _store(ids: list[list[int]]) -> TokenStore:
    flat = np.fromiter(chain.from_iterable(ids), np.int32, count=sum(map(len, ids)))
    lengths = torch.tensor([len(i) for i in ids], dtype=torch.long)
    return TokenStore(torch.from_numpy(flat), offsets_of(lengths))


def encode_truncated(tok: Tokenizer, text: str, max_len: int | None, mode: str = "head"
                     ) -> list[int]:
    """``text``'s ids truncated as training truncates (:meth:`TokenStore.truncate`), tokenizing
    only as much of a long text's start (and, for ``head_tail``, end) as the kept tokens need:
    a 2 MB review costs no more than a short one. An empty text gives ``[]``."""
    return _store([_kept_ids(tok, text, max_len, mode)]).truncate(max_len, mode).flat.tolist()


def _kept_ids(tok: Tokenizer, text: str, max_len: int | None, mode: str) -> list[int]:
    """Ids of ``text``, or of a cut start and end of it whose tokens are exactly the text's
    first and last ones, enough of each for truncation to keep the same tokens."""
    if max_len is not None and max_len >= 1:
        head = max_len // 4 if mode == "head_tail" else max_len
        tail = max_len - head
        budget = CHARS_PER_TOKEN * max_len
        while budget * (2 if tail else 1) < len(text):  # start and end must not overlap
            front = _ids(tok, _whole_start(text[:budget]))
            back = _ids(tok, _whole_end(text[-budget:])) if tail else []
            if len(front) >= head and len(back) >= tail:
                return front + back
            budget *= 4
    return _ids(tok, text)


def _ids(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids if text else []


def _whole_start(text: str) -> str:
    """``text`` less its last chunk (the cut may split it) and any chunk ending in "<br" before
    it: the normalizer drops a "<br />" that the cut may have split. What is left tokenizes as
    it does inside the whole text (pre-tokens never span whitespace)."""
    rev = text[::-1]  # matched from the start: no quadratic backtracking on long runs
    end = _CHUNK.match(rev).end()
    while rev[end:end + 3].lower() == "rb<":
        end = _CHUNK.match(rev, end).end()
    return text[: len(text) - end]


def _whole_end(text: str) -> str:
    """``text`` less its first chunk and any chunk starting with "/>" or ">" (the end of a
    "<br />" that began before the cut)."""
    start = _CHUNK.match(text).end()
    while text[start:start + 2] == "/>" or text[start:start + 1] == ">":
        start = _CHUNK.match(text, start).end()
    return text[start:]
