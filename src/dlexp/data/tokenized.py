"""What every text datamodule shares: the tokenizer settings, truncation to ``max_len``, batches
of token ids (padded per batch, length-bucketed), and the :meth:`describe` that lets predict
rebuild the encoding from a checkpoint. IMDB (``data/imdb.py``) and your own texts
(``data/text.py``) differ in where the texts come from and how they are split."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

import torch
from tokenizers import Tokenizer

from dlexp.data.pooled import PooledDataModule, check_batch_sizes
from dlexp.data.text_loader import TextBatchLoader
from dlexp.data.token_store import TRUNCATE, TokenStore
from dlexp.data.tokenizer import MODELS, PAD_ID, UNK_ID, from_json, train_tokenizer
from dlexp.errors import DataError

log = logging.getLogger(__name__)
TOKENIZER = {"model": "word", "vocab_size": 20_000, "min_frequency": 2, "use_unsup": False}

Part = tuple[TokenStore, torch.Tensor]  # token ids and labels (-1: unlabeled)


def tokenizer_settings(given: dict) -> dict:
    """``data.tokenizer`` completed with the defaults, each value checked."""
    unknown = set(given) - set(TOKENIZER)
    if unknown:
        raise ValueError(f"unknown data.tokenizer keys {sorted(unknown)}; valid: "
                         f"{', '.join(TOKENIZER)}")
    settings = {**TOKENIZER, **given}
    if settings["model"] not in MODELS:
        raise ValueError(f"data.tokenizer.model must be one of {', '.join(MODELS)}, "
                         f"got {settings['model']!r}")
    for key, low in (("vocab_size", 3), ("min_frequency", 0)):
        value = settings[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"data.tokenizer.{key} must be a whole number >= {low}, "
                             f"got {value!r}")
    if not isinstance(settings["use_unsup"], bool):
        raise ValueError(f"data.tokenizer.use_unsup must be true or false, got "
                         f"{settings['use_unsup']!r}")
    return settings


class TokenizedDataModule(PooledDataModule):
    """Batches are ``((ids, lengths), labels)``. Subclasses set ``name``, ``class_names`` and
    ``num_classes``, and in :meth:`_setup_splits` the parts (:data:`Part`), ``tokenizer_json``
    and ``vocab_size``."""

    modality = "text"
    multilabel = False  # a multi-label table sets it: labels are then multi-hot rows (N, C)
    threshold = 0.5  # multi-label: the probability over which a label is predicted
    name: str  # describe()'s, which inference reads
    class_names: list[str]
    tokenizer_json: str
    vocab_size: int

    def __init__(self, batch_size: int, eval_batch_size: int, seed: int,
                 num_labeled: int | None, tokenizer: dict | None, max_len: int | None,
                 truncate: str, bucket: bool, bucket_chunk: int, pin_memory: bool,
                 unlabeled_ratio: float | None, sampler: str | None = None) -> None:
        super().__init__(unlabeled_ratio, sampler)
        check_batch_sizes(batch_size, eval_batch_size)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.num_labeled, self.pin_memory = seed, num_labeled, pin_memory
        self.tokenizer = tokenizer_settings(tokenizer or {})
        if truncate not in TRUNCATE:
            raise ValueError(f"data.truncate must be one of {', '.join(TRUNCATE)}, got {truncate!r}")
        if max_len is not None and max_len < 1:
            raise ValueError(f"data.max_len must be >= 1 or null, got {max_len}")
        if bucket_chunk < 1:
            raise ValueError(f"data.bucket_chunk must be >= 1, got {bucket_chunk}")
        self.max_len, self.truncate = max_len, truncate
        self.bucket, self.bucket_chunk = bucket, bucket_chunk
        self.given_tokenizer: str | None = None  # a checkpoint's, set by use_pipeline

    # ---------------------------------------------------------------- the tokenizer
    def use_pipeline(self, info: dict, truncation: bool = True) -> None:
        """Encode with a checkpoint's tokenizer (``info``: its data description) instead of
        fitting one: to evaluate the checkpoint on these texts (``dlexp-eval``: its truncation
        too) or to fine-tune from it (``transfer.source``: the embedding's rows are the words
        of its tokenizer; ``truncation=False`` keeps this run's ``max_len`` and ``truncate``)."""
        if info.get("modality") != "text" or not info.get("tokenizer"):
            raise DataError(f"this checkpoint's model does not take text "
                            f"(data={info.get('name')}); use data of its own kind")
        self.given_tokenizer = info["tokenizer"]
        if truncation:
            self.max_len = info.get("max_len", self.max_len)
            self.truncate = info.get("truncate", self.truncate)

    def tokenizer_key(self) -> dict:
        """What token ids depend on of the tokenizer, for cache keys: its settings when it is
        fitted here, the tokenizer itself when it is given (:meth:`use_pipeline`)."""
        if self.given_tokenizer is None:
            return {"tokenizer": self.tokenizer}
        return {"given_tokenizer": hashlib.sha256(self.given_tokenizer.encode()).hexdigest()}

    def _tokenizer_for(self, corpus: Iterable[str], count: int) -> Tokenizer:
        """The given tokenizer, else one fitted on ``corpus`` (``count`` texts)."""
        if self.given_tokenizer is not None:
            log.info("%s: encoding with the checkpoint's tokenizer, not fitting one",
                     self.name)
            return from_json(self.given_tokenizer)
        log.info("%s: training a %s tokenizer on %d texts", self.name, self.tokenizer["model"],
                 count)
        return train_tokenizer(corpus, self.tokenizer["model"], self.tokenizer["vocab_size"],
                               self.tokenizer["min_frequency"])

    def _log_unknown(self, store: TokenStore) -> None:
        """With a given tokenizer, how much of this data it does not know ([UNK] tokens):
        the words of other texts than the checkpoint's may be missing from its vocabulary."""
        if self.given_tokenizer is not None and len(store.flat):
            share = (store.flat == UNK_ID).float().mean().item()
            log.info("%s: %.1f%% of the tokens are unknown to the checkpoint's tokenizer",
                     self.name, 100 * share)

    def _part(self, saved: dict) -> Part:
        """A cached part, truncated to ``max_len`` (after the cache: changing it is free)."""
        store = TokenStore(saved["flat"], saved["offsets"])
        return store.truncate(self.max_len, self.truncate), saved["labels"]

    def _set_tokenizer(self, tokenizer_json: str) -> None:
        self.tokenizer_json = tokenizer_json
        self.vocab_size = from_json(tokenizer_json).get_vocab_size()

    def describe(self) -> dict:
        """What inference needs to reproduce the input pipeline, stored in checkpoints (plain
        data only: checkpoints are loaded with weights_only=True)."""
        net_kwargs = self.net_kwargs()
        return {"name": self.name, "modality": self.modality,
                "class_names": list(self.class_names), "num_classes": self.num_classes,
                "net_kwargs": net_kwargs, "tokenizer": self.tokenizer_json,
                "max_len": self.max_len, "truncate": self.truncate,
                "multilabel": self.multilabel, "threshold": self.threshold}

    def net_kwargs(self) -> dict:
        """What a network must be told about this data; sets up the data to know the
        vocabulary (the entry point asks before training starts)."""
        self.setup()
        return {"vocab_size": self.vocab_size, "num_classes": self.num_classes, "pad_idx": PAD_ID}

    # ---------------------------------------------------------------- semi-supervised
    def _with_pool_rows(self, part: Part, idx: torch.Tensor, labels: torch.Tensor) -> Part:
        return (TokenStore.cat([part[0], self.unlabeled_set[0].take(idx)]),
                torch.cat([part[1], labels]))

    # ---------------------------------------------------------------- loaders
    def _loader(self, part: Part, train: bool, sort: bool = True,
                batch_size: int | None = None) -> TextBatchLoader:
        rank, world = self.rank_and_world()
        # evaluation order is free, so sort it all by length (least padding) unless the
        # caller needs the pool's own order back
        return TextBatchLoader(
            *part, batch_size or (self.batch_size if train else self.eval_batch_size),
            shuffle=train,
            bucket=self.bucket and sort, seed=self.seed, rank=rank, world_size=world,
            chunk_batches=self.bucket_chunk if train else None,
            pin_memory=self.pin_memory and torch.cuda.is_available())

    def predict_dataloader(self) -> TextBatchLoader:
        """The test set in its own order, not sorted by length (eval.py's predictions.csv)."""
        return self._loader(self.test_set, train=False, sort=False)

    def unlabeled_dataloader(self) -> TextBatchLoader:
        """The unlabeled pool in its own order (labels: true ones, or -1 for unlabeled texts)."""
        return self._loader(self.unlabeled_set, train=False, sort=False)
