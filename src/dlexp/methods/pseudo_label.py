"""Pseudo-labelling, the course's self-training loop, as a Lightning callback.

Round 0 trains on the labeled set for ``warmup_epochs`` (a 100-sample set is one step per
epoch, so it needs many). At the end of every round (then every ``epochs_per_round`` epochs) the
model labels the unlabeled pool; confident predictions, class-balanced under a per-class cap,
join the training set for the next round (the course warns that low-quality or one-sided
additions drag the model towards one class). Each round re-selects from the whole pool, so an
earlier mistake can be dropped. The pool's true labels only measure the pseudo labels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch
from lightning.fabric.utilities import move_data_to_device
from lightning.pytorch.trainer.states import RunningStage

from dlexp.errors import ConfigError
from dlexp.task import forward_net

log = logging.getLogger(__name__)
RESTARTS = ("finetune", "reinit")


def select_pseudo_labels(probs: torch.Tensor, threshold: float, per_class_cap: int | None = None,
                         balanced: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick (indices, labels) from softmax outputs ``probs`` [N, C].

    A sample qualifies when its top probability is at least ``threshold``; per predicted class,
    the most confident ones come first, at most ``per_class_cap`` of them. ``balanced`` gives
    every class the count of the scarcest class (a class with no confident sample adds none).
    """
    confidence, labels = probs.max(1)
    num_classes = probs.shape[1]
    picks = []
    for c in range(num_classes):
        pos = ((labels == c) & (confidence >= threshold)).nonzero().squeeze(1)
        picks.append(pos[confidence[pos].argsort(descending=True, stable=True)][:per_class_cap])
    if balanced:
        k = min(len(p) for p in picks)
        picks = [p[:k] for p in picks]
    idx = torch.cat(picks).sort().values
    return idx, labels[idx]


def precision_per_class(labels: torch.Tensor, truth: torch.Tensor, num_classes: int
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(added, checkable, correct) per pseudo class; ``truth`` -1 marks a sample whose true
    label nobody knows (IMDB's unsup reviews): added, but not checkable."""
    known = truth >= 0
    added = torch.bincount(labels, minlength=num_classes)
    checkable = torch.bincount(labels[known], minlength=num_classes)
    correct = torch.bincount(labels[known & (labels == truth)], minlength=num_classes)
    return added, checkable, correct


class PseudoLabel(L.Callback):
    """Self-training rounds over ``datamodule.unlabeled_dataloader()``.

    ``restart``: ``finetune`` continues from the current weights each round; ``reinit`` goes back
    to the initial weights (and clears the optimizer state), so each round is a fresh training
    on labeled + pseudo-labelled data, as in the course. ``per_class_cap`` grows with the round
    (round r may add ``r * per_class_cap`` per class) when ``grow_cap``.
    """

    def __init__(self, rounds: int = 3, epochs_per_round: int = 10,
                 warmup_epochs: int | None = None, threshold: float = 0.95,
                 per_class_cap: int | None = 1000, grow_cap: bool = True, balanced: bool = True,
                 restart: str = "finetune") -> None:
        warmup_epochs = epochs_per_round if warmup_epochs is None else warmup_epochs
        if rounds < 0 or epochs_per_round < 1 or warmup_epochs < 1:
            raise ConfigError(f"pseudo_label needs rounds >= 0, epochs_per_round >= 1 and "
                              f"warmup_epochs >= 1, got {rounds}, {epochs_per_round} and "
                              f"{warmup_epochs}")
        if restart not in RESTARTS:
            raise ConfigError(f"pseudo_label restart must be one of {', '.join(RESTARTS)}, "
                              f"got {restart!r}")
        if not 0 <= threshold <= 1:
            raise ConfigError(f"pseudo_label threshold must be in [0, 1], got {threshold}")
        self.rounds, self.epochs_per_round, self.threshold = rounds, epochs_per_round, threshold
        self.warmup_epochs = warmup_epochs
        self.per_class_cap, self.grow_cap, self.balanced = per_class_cap, grow_cap, balanced
        self.restart = restart
        self.round = 0
        self.pseudo: tuple[torch.Tensor, torch.Tensor] | None = None
        self.history: list[dict] = []
        self._initial: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        dm = trainer.datamodule
        if not all(hasattr(dm, f) for f in ("unlabeled_dataloader", "set_pseudo_labels")):
            raise ConfigError(f"method=pseudo_label needs a datamodule with an unlabeled pool; "
                              f"{type(dm).__name__} has none")
        if trainer.world_size > 1:  # each rank would label only its shard of the pool
            raise ConfigError("method=pseudo_label runs on one device; use trainer.devices=1")
        dm.setup("fit")
        _ = dm.unlabeled_set  # built now (IMDB: lazily), so a missing pool fails before warm-up
        # the datamodule adds the pseudo labels in train_dataloader(): rebuild it each epoch
        # (cheap: in-memory tensors), since round 0 and later rounds differ in length
        trainer.reload_dataloaders_every_n_epochs = 1
        planned = self.warmup_epochs + self.rounds * self.epochs_per_round
        if trainer.max_epochs is not None and 0 <= trainer.max_epochs < planned:
            log.warning("pseudo_label: %d rounds need %d epochs but trainer.max_epochs=%d",
                        self.rounds, planned, trainer.max_epochs)
        if self.restart == "reinit":
            self._initial = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pseudo is not None:  # resumed: the pool labels of the round we stopped in
            trainer.datamodule.set_pseudo_labels(*self.pseudo)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        since = trainer.current_epoch + 1 - self.warmup_epochs
        if since < 0 or since % self.epochs_per_round or self.round >= self.rounds:
            return
        self.round += 1
        probs, truth = self._predict_pool(trainer, pl_module)
        cap = self.per_class_cap * self.round if self.grow_cap and self.per_class_cap else \
            self.per_class_cap
        idx, labels = select_pseudo_labels(probs, self.threshold, cap, self.balanced)
        trainer.datamodule.set_pseudo_labels(idx, labels)
        self.pseudo = (idx, labels)
        self._report(pl_module, labels, truth[idx], len(probs))
        if self.restart == "reinit" and self._initial is not None:
            pl_module.load_state_dict(self._initial)
            for optimizer in trainer.optimizers:
                optimizer.state.clear()

    # ------------------------------------------------------------------ helpers
    def _predict_pool(self, trainer: L.Trainer, pl_module: L.LightningModule
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        dm = trainer.datamodule
        probs, truth = [], []
        with _inference(trainer, pl_module):
            for batch in dm.unlabeled_dataloader():
                batch = dm.on_after_batch_transfer(move_data_to_device(batch, pl_module.device),
                                                   0)
                with trainer.precision_plugin.forward_context():
                    logits = forward_net(pl_module.net, batch[0])
                probs.append(logits.float().softmax(-1).cpu())
                truth.append(batch[-1].cpu())
        num_classes = pl_module.num_classes
        return (torch.cat(probs) if probs else torch.empty(0, num_classes),
                torch.cat(truth) if truth else torch.empty(0, dtype=torch.long))

    def _report(self, pl_module: L.LightningModule, labels: torch.Tensor, truth: torch.Tensor,
                pool: int) -> None:
        k = pl_module.num_classes
        added, checkable, correct = precision_per_class(labels, truth, k)
        precision = correct.sum().item() / max(checkable.sum().item(), 1)
        row = {"round": self.round, "added": len(labels), "pool": pool, "precision": precision,
               "added_per_class": added.tolist(),
               "precision_per_class": [round(c / a, 4) if a else None
                                       for c, a in zip(correct.tolist(), checkable.tolist(),
                                                       strict=True)]}
        self.history.append(row)
        log.info("pseudo-label round %d: %d of %d pool samples added (precision %.4f); per "
                 "class added %s, precision %s", self.round, len(labels), pool, precision,
                 row["added_per_class"], row["precision_per_class"])
        metrics = {"pseudo/round": float(self.round), "pseudo/added": float(len(labels)),
                   "pseudo/precision": precision}
        metrics.update({f"pseudo/added_c{c}": float(a) for c, a in enumerate(added.tolist())})
        pl_module.log_dict(metrics)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        state: dict = {"round": self.round}
        if self.pseudo is not None:
            state["indices"], state["labels"] = self.pseudo
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.round = int(state_dict.get("round", 0))
        if "indices" in state_dict:
            self.pseudo = (state_dict["indices"], state_dict["labels"])


@contextmanager
def _inference(trainer: L.Trainer, pl_module: L.LightningModule) -> Iterator[None]:
    """Eval mode, no grad, and a non-training stage: datamodules augment batches while the
    trainer is training, and the pool must be judged as it is. Every module's mode comes back
    (a frozen backbone stays in eval)."""
    modes = [m.training for m in pl_module.modules()]
    stage = trainer.state.stage
    pl_module.eval()
    trainer.state.stage = RunningStage.PREDICTING
    try:
        with torch.no_grad():
            yield
    finally:
        trainer.state.stage = stage
        for m, mode in zip(pl_module.modules(), modes, strict=True):
            m.training = mode
