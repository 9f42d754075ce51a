"""Language-model pretraining of a text classifier's embedding and encoder (Dai & Le 2015;
ULMFiT's first stage, Howard & Ruder 2018): next-token prediction over the training and
unlabeled reviews, read as one stream (``data/token_stream.py``) by truncated backprop through
time: the recurrent state runs on from one batch to the next, detached, so gradients span
``bptt`` tokens while the state has read the whole text before them.

The classifier (``model=lstm|gru|rnn``) stays a plain network; the next-token head
(``models/language_model.py``: adaptive softmax tied to the embedding) lives beside it in this
task, so the checkpoint's ``net.*`` weights are what ``transfer.source`` loads into a classifier.
A one-layer bidirectional encoder trains both directions: the backward cells as a language
model of the reversed stream (the batches carry it), sharing the embedding and the tied head
(as ELMo does); the loss is the mean over both. A stacked bidirectional encoder is refused: its
upper layers read both directions, so no single direction predicts the next token.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dlexp.models.language_model import TiedAdaptiveSoftmax
from dlexp.task import ClassificationTask

BIDIRECTIONAL = ("method=language_model trains each direction of a one-layer encoder as its own "
                 "language model; a stacked bidirectional one's upper layers read both "
                 "directions: set model.num_layers=1 or model.bidirectional=false")


def detach(state: list) -> list:
    """The carried state without its graph: backprop stops at the batch boundary."""
    return [tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach() for h in state]


class LanguageModelTask(ClassificationTask):
    """Trains on ``(ids [B, T], next ids [B, T])`` stream batches; logs ``{train,val}/loss``
    (nats per token) and ``{train,val}/ppl`` (their exponential, the perplexity)."""

    def __init__(self, *args: Any, cutoffs: list[int] | tuple[int, ...] = (2000, 10000),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.net, "run_stream"):
            raise ValueError(f"method=language_model trains the embedding and encoder of "
                             f"model=lstm, gru or rnn, not a {type(self.net).__name__}")
        if self.net.bidirectional and len(self.net.layers) > 1:
            raise ValueError(BIDIRECTIONAL)
        self.directions = len(self.net.layers[0])
        # marks the checkpoint: eval, predict and export refuse it (its net head is untrained)
        self.checkpoint_extras = {**self.checkpoint_extras, "stage": "language_model"}
        hidden = self.net.layers[-1][0].hidden_size
        self.lm_head = TiedAdaptiveSoftmax(self.net.embedding, hidden, cutoffs)
        self._state: dict[tuple[str, int], list | None] = {}
        # [sum of token NLLs, tokens] per stage; plain tensors, not buffers (not saved)
        self._sums = {"train": torch.zeros(2, dtype=torch.float64),
                      "val": torch.zeros(2, dtype=torch.float64)}

    def _stream_loss(self, batch: tuple, stage: str) -> torch.Tensor:
        """Mean next-token loss over the directions: (inputs, targets) pairs, forward first."""
        if len(batch) != 2 * self.directions:
            raise ValueError(f"a {self.directions}-direction language model needs "
                             f"{2 * self.directions} tensors a batch, got {len(batch)}: set "
                             "method.data.backward to model.bidirectional (the method's yaml "
                             "does)")
        losses = [self._direction_loss(batch[2 * d], batch[2 * d + 1], stage, d)
                  for d in range(self.directions)]
        return torch.stack(losses).mean()

    def _direction_loss(self, x: torch.Tensor, y: torch.Tensor, stage: str, direction: int
                        ) -> torch.Tensor:
        out, state = self.net.run_stream(x, self._state.get((stage, direction)), direction)
        self._state[(stage, direction)] = detach(state)
        loss = self.lm_head(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        sums = self._sums[stage].to(loss.device)
        self._sums[stage] = sums + torch.stack([loss.detach().double() * y.numel(),
                                                sums.new_tensor(y.numel())])
        return loss

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        loss = self._stream_loss(batch, "train")
        if self.penalty is not None:
            loss = loss + self.penalty(self.net)
        self.log_step(loss)
        return loss

    def on_train_epoch_start(self) -> None:
        self._reset("train")  # a new epoch is a new review order: the rows restart

    def _reset(self, stage: str) -> None:
        for d in range(self.directions):
            self._state[(stage, d)] = None
        self._sums[stage] = torch.zeros(2, dtype=torch.float64)

    def on_train_epoch_end(self) -> None:
        loss = self._mean("train")
        self.check_divergence(loss, "epoch's mean")
        self.log_dict({"train/loss_epoch": loss, "train/ppl": _ppl(loss)}, sync_dist=True)

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self._stream_loss(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._reset("val")

    def on_validation_epoch_end(self) -> None:
        loss = self._mean("val")
        self.log_dict({"val/loss": loss, "val/ppl": _ppl(loss)}, prog_bar=True, sync_dist=True)

    def _mean(self, stage: str) -> float:
        total, tokens = self._sums[stage].tolist()
        return total / tokens if tokens else math.nan

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        raise RuntimeError("method=language_model has no test stage")

    def predict_step(self, batch: tuple, batch_idx: int) -> None:
        raise RuntimeError("method=language_model has no predictions: fine-tune a classifier "
                           "from its checkpoint (transfer=finetune transfer.source=...)")


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 700.0))  # exp overflows float64 past ~709
