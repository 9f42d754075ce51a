"""A text datamodule's texts as one token stream, for the language-model stage
(``method=language_model``): truncated backprop through time reads it in slices.

The training stream is the training split plus the unlabeled pool (IMDB: ``train/unsup`` with
``data.include_unsup``; a text folder's ``data.unlabeled_dirs``; a table's rows whose split is
``unlabeled``), each text followed by ``[PAD]`` as an end-of-text marker, in a new seeded order
each epoch. It is cut into ``batch_size`` rows read left to right, so batch ``k + 1`` continues
batch ``k`` row by row and the model can carry its state across them. Validation is the
validation split's stream, in its own order. With ``backward`` (a bidirectional encoder:
``method.data.backward`` reads ``model.bidirectional``) each batch also holds the same stream
reversed, for the backward cells' language model. No validation or test text ever enters
training: the parts are named, and every text is checked against the validation and test splits.
IMDB's own training and unlabeled reviews hold exact copies of test reviews (123 and 270 of
them by their text, measured on aclImdb v1; in a default run's stream 381 of test reviews and
51 of validation ones): they are dropped from the stream (``test_duplicates=drop``), or refused
(``refuse``).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from dlexp.data.tensor_loader import EpochSampler, ResumableBatches
from dlexp.data.token_store import TokenStore
from dlexp.data.tokenizer import PAD_ID
from dlexp.errors import DataError

log = logging.getLogger(__name__)
PARTS = ("train", "unlabeled")  # what a language model may train on
DUPLICATES = ("drop", "refuse")  # what to do with copies of test reviews in those
# inputs [B, T] and next tokens [B, T]; with ``backward``, then those of the reversed stream
StreamBatch = tuple[torch.Tensor, ...]


def as_stream(store: TokenStore, order: torch.Tensor) -> torch.Tensor:
    """The reviews ``order`` back to back, each followed by ``PAD_ID``: int64 [tokens]."""
    part = store.take(order)
    n = len(part)
    stream = torch.full((len(part.flat) + n,), PAD_ID, dtype=torch.long)
    ends = part.offsets[1:] + torch.arange(n)  # where each review's marker lands
    keep = torch.ones(len(stream), dtype=torch.bool)
    keep[ends] = False
    stream[keep] = part.flat.long()
    return stream


def review_keys(store: TokenStore) -> list[bytes]:
    """Each review's token ids as bytes: equal keys, equal reviews."""
    flat, off = store.flat.numpy(), store.offsets.tolist()
    return [flat[off[i]:off[i + 1]].tobytes() for i in range(len(store))]


def copies_of(stream: TokenStore, held_out: TokenStore) -> list[int]:
    """Positions of the stream's (non-empty) texts whose token ids equal a held-out text's."""
    seen = set(review_keys(held_out)) - {b""}
    return [i for i, key in enumerate(review_keys(stream)) if key in seen]


def without_held_out_text(stream: TokenStore, held_out: dict[str, TokenStore], duplicates: str
                          ) -> TokenStore:
    """``stream`` minus its copies of the ``held_out`` texts (``{"val": ..., "test": ...}``)
    (``drop``), or refused if it holds any (``refuse``); checked again after dropping, as the
    guarantee this stage gives."""
    copies = {part: copies_of(stream, store) for part, store in held_out.items()}
    found = ", ".join(f"{len(c)} of the {part} split" for part, c in copies.items() if c)
    dropped = sorted(set().union(*copies.values()))
    if dropped and duplicates == "refuse":
        raise DataError(f"the language model's training text holds copies of texts it must "
                        f"never see ({found}): remove them from the data, or set "
                        "method.data.test_duplicates=drop")
    if dropped:
        log.info("language model: %d training/unlabeled texts are copies of held-out texts "
                 "(%s): left out", len(dropped), found)
        keep = torch.ones(len(stream), dtype=torch.bool)
        keep[dropped] = False
        stream = stream.take(keep.nonzero().squeeze(1))
    if any(copies_of(stream, store) for store in held_out.values()):
        raise DataError("the language model's training text still holds held-out texts")
    return stream


class StreamLoader(ResumableBatches):
    """``(inputs, next tokens)`` slices [batch_size, bptt] of the stream of ``store``; with
    ``backward``, followed by the same of the reversed stream."""

    def __init__(self, store: TokenStore, batch_size: int, bptt: int, shuffle: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 backward: bool = False) -> None:
        if batch_size < 1 or bptt < 1:
            raise ValueError(f"batch_size and bptt must be >= 1, got {batch_size}, {bptt}")
        self.store, self.batch_size, self.bptt = store, batch_size, bptt
        self.backward = backward
        self.sampler = EpochSampler(len(store), shuffle, seed, rank, world_size)
        self.batch_sampler = None  # Lightning looks for it next to ``sampler``
        tokens = (len(store.flat) + len(store)) // world_size
        self.row_len = tokens // batch_size
        if self.row_len < 2:
            raise ValueError(f"{tokens} tokens cannot fill {batch_size} rows: lower the batch "
                             "size")
        self._rows = self._back = torch.zeros(batch_size, self.row_len, dtype=torch.long)

    def __len__(self) -> int:
        return -(-(self.row_len - 1) // self.bptt)

    def index_batches(self) -> list[int]:
        stream = as_stream(self.store, self.sampler.indices())
        need = self.batch_size * self.row_len
        if len(stream) < need:  # a short DDP shard wraps around: every rank takes as many steps
            stream = stream.repeat(-(-need // len(stream)))
        self._rows = stream[:need].view(self.batch_size, self.row_len)
        if self.backward:
            self._back = stream[:need].flip(0).view(self.batch_size, self.row_len)
        return list(range(len(self)))

    def make_batch(self, k: int) -> StreamBatch:
        start = k * self.bptt
        stop = min(start + self.bptt, self.row_len - 1)
        rows = (self._rows, self._back) if self.backward else (self._rows,)
        return tuple(t for r in rows for t in (r[:, start:stop], r[:, start + 1:stop + 1]))


class TokenStreamDataModule(L.LightningDataModule):
    """Wraps a text datamodule (``base``: its splits, tokenizer and ``describe``) to serve its
    reviews as token streams. ``parts``: which of the base's sets train the model."""

    def __init__(self, base: Any, bptt: int = 70, batch_size: int = 32,
                 eval_batch_size: int | None = None,
                 parts: list[str] | tuple[str, ...] = PARTS, test_duplicates: str = "drop",
                 backward: bool = False) -> None:
        super().__init__()
        if getattr(base, "modality", None) != "text":
            raise ValueError("method=language_model needs text data (data=imdb, text_folder "
                             "or text_table)")
        bad = [p for p in parts if p not in PARTS]
        if bad or not parts:
            raise ValueError(f"method.data.parts {list(parts)}: a language model trains only on "
                             f"{' and '.join(PARTS)} text, never on val or test text")
        if test_duplicates not in DUPLICATES:
            raise ValueError(f"method.data.test_duplicates must be one of "
                             f"{', '.join(DUPLICATES)}, got {test_duplicates!r}")
        for key, value in (("bptt", bptt), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"method.data.{key} must be a whole number >= 1, got {value}")
        self.base, self.bptt, self.batch_size = base, bptt, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.parts, self.test_duplicates = tuple(parts), test_duplicates
        self.backward = backward
        self.train_stream: TokenStore | None = None

    @property
    def num_classes(self) -> int:
        """The base's: a text folder or table knows its classes only once it is set up."""
        return self.base.num_classes

    def prepare_data(self) -> None:
        self.base.prepare_data()

    def describe(self) -> dict:
        return self.base.describe()

    def class_counts(self) -> torch.Tensor:
        return self.base.class_counts()

    def setup(self, stage: str | None = None) -> None:
        if self.train_stream is not None:
            return
        self.base.setup()
        sets = {"train": self.base.train_set, "unlabeled": self.base.unlabeled_set}
        stream = TokenStore.cat([sets[p][0] for p in self.parts])
        held_out = {"val": self.base.val_set[0], "test": self.base.test_set[0]}
        stream = without_held_out_text(stream, held_out, self.test_duplicates)
        self.train_stream, self.val_stream = stream, self.base.val_set[0]
        log.info("language model: %d texts (%s), %d tokens; validation %d texts",
                 len(stream), "+".join(self.parts), len(stream.flat), len(self.val_stream))

    def _loader(self, store: TokenStore, train: bool) -> StreamLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer \
            else (0, 1)
        try:
            return StreamLoader(store, self.batch_size if train else self.eval_batch_size,
                                self.bptt, shuffle=train, seed=getattr(self.base, "seed", 0),
                                rank=rank, world_size=world, backward=self.backward)
        except ValueError as e:
            raise DataError(f"method.data: {e}") from None

    def train_dataloader(self) -> StreamLoader:
        self.setup()
        return self._loader(self.train_stream, train=True)

    def val_dataloader(self) -> StreamLoader:
        self.setup()
        return self._loader(self.val_stream, train=False)

    def test_dataloader(self) -> Any:
        raise DataError("method=language_model has no test stage: the test split stays unseen "
                        "until the fine-tuned classifier is tested (set test=false)")

