"""Tokenization with HuggingFace ``tokenizers``: train, serialise, encode.

A tokenizer travels as its JSON string (``Tokenizer.to_str``), so a checkpoint carries it as
plain data and ``predict`` rebuilds exactly the encoding used in training from the checkpoint.
"""

from __future__ import annotations

import logging
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
    store = encode(from_json(description["tokenizer"]), texts)
    store = store.truncate(description["max_len"], description["truncate"])
    return store.pad(torch.arange(len(store)))
