"""What every dlexp datamodule shares: a labeled training split and an unlabeled pool
(``num_labeled``), pseudo-labels that join the labeled set (``method=pseudo_label``), and the
two-stream training loader that ``method=fixmatch`` reads (``unlabeled_ratio``), and
class-balanced training epochs (``sampler``)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader

from dlexp.data import splits
from dlexp.data.tensor_loader import balanced_weights
from dlexp.errors import DataError

Part = tuple[Any, torch.Tensor]  # inputs (a tensor, or a TokenStore) and labels
SAMPLERS = (None, "balanced")  # data.sampler: the training epoch's draw


def check_batch_sizes(batch_size: int, eval_batch_size: int) -> None:
    """Checked when the config is built, not when Lightning first asks for a loader."""
    for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"data.{key} must be a whole number >= 1, got {value}")


def check_choice(key: str, value: Any, choices: Any) -> None:
    """``data.<key>`` is one of ``choices`` (a dict's keys or a sequence), checked at build."""
    if value not in choices:
        named = ("null" if c is None else str(c).lower() if isinstance(c, bool) else str(c)
                 for c in choices)
        raise ValueError(f"data.{key} must be one of {', '.join(named)}, got {value!r}")


class PooledDataModule(L.LightningDataModule):
    """Subclasses build ``train_set``, ``val_set``, ``test_set`` and ``unlabeled_set`` in
    :meth:`_setup_splits` (or serve ``unlabeled_set`` lazily, as IMDB does), and batch a part with :meth:`_loader` and join two with
    :meth:`_with_pool_rows`."""

    num_classes: int

    def __init__(self, unlabeled_ratio: float | None = None, sampler: str | None = None) -> None:
        super().__init__()
        if unlabeled_ratio is not None and unlabeled_ratio <= 0:
            raise ValueError(f"data.unlabeled_ratio must be > 0, got {unlabeled_ratio}")
        check_choice("sampler", sampler, SAMPLERS)
        self.unlabeled_ratio, self.sampler = unlabeled_ratio, sampler
        self.pseudo_labels: tuple[torch.Tensor, torch.Tensor] | None = None
        self._ready = False

    # ---------------------------------------------------------------- for subclasses
    def _setup_splits(self) -> None:
        raise NotImplementedError

    def _loader(self, part: Part, train: bool, batch_size: int | None = None) -> Any:
        raise NotImplementedError

    def _with_pool_rows(self, part: Part, idx: torch.Tensor, labels: torch.Tensor) -> Part:
        """``part`` plus the unlabeled pool's rows ``idx`` with ``labels``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared
    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        try:
            self._setup_splits()
        except ValueError as e:  # sizes that do not fit this data: the user's to fix
            raise DataError(str(e)) from None
        self._ready = True

    def rank_and_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def class_counts(self) -> torch.Tensor:
        """Samples per class in the labeled training split (for class-weighted losses)."""
        self.setup()
        return torch.bincount(self.train_set[1], minlength=self.num_classes)

    def train_targets(self) -> torch.Tensor:
        """The labeled training split's targets: class indices, or multi-hot rows (N, C)
        for multi-label data (BCE's ``pos_weight=balanced``)."""
        self.setup()
        return self.train_set[1]

    def set_pseudo_labels(self, indices: torch.Tensor, labels: torch.Tensor) -> None:
        """Train on these pool samples too (positions in ``unlabeled_dataloader()`` order), with
        these labels; replaces earlier pseudo-labels, empty tensors clear them. Takes effect at
        the next ``train_dataloader()`` call (``reload_dataloaders_every_n_epochs``)."""
        self.setup()
        self.pseudo_labels = splits.checked_pseudo_labels(indices, labels,
                                                          len(self.unlabeled_set[1]),
                                                          self.num_classes)

    def train_dataloader(self) -> Any:
        """The labeled set (plus any pseudo-labelled samples); with ``unlabeled_ratio`` also the
        unlabeled pool, ``ratio`` times the batch size, as ``{"labeled", "unlabeled"}`` batches
        that cycle the labeled set until the pool is done. ``sampler=balanced``: the labeled
        epoch draws each class equally often (the loader's seeded, resumable order)."""
        part = self.train_set
        if self.pseudo_labels is not None:
            part = self._with_pool_rows(part, *self.pseudo_labels)
        labeled = self._loader(part, train=True)
        if self.sampler == "balanced":
            labeled.sampler.weights = balanced_weights(part[1])
        if self.unlabeled_ratio is None:
            return labeled
        size = max(1, round(self.unlabeled_ratio * self.batch_size))
        unlabeled = self._loader(self.unlabeled_set, train=True, batch_size=size)
        return CombinedLoader({"labeled": labeled, "unlabeled": unlabeled}, "max_size_cycle")

    def val_dataloader(self) -> Any:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> Any:
        return self._loader(self.test_set, train=False)
