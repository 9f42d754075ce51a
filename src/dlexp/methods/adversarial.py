"""Adversarial and virtual adversarial training on the word embeddings (Miyato et al. 2017,
arXiv 1605.07725): besides the clean loss, the network is trained on its embedded inputs
pushed, within an L2 ball of radius ``epsilon`` per sequence, in the direction that hurts it
most (``kind=adversarial``: the gradient of the loss) or changes its prediction most
(``kind=virtual``: one power-iteration step on the KL divergence, no labels needed).

The ball's radius is in units of the embedding's per-coordinate RMS, so ``epsilon=5`` means the
paper's setting (normalised embeddings) whatever scale the embedding learned. Works with any
network whose token embedding is ``net.embedding`` (``model=lstm|gru|rnn``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlexp.task import ClassificationTask

KINDS = ("adversarial", "virtual")


class AdversarialTask(ClassificationTask):
    """Loss: ``criterion(x) + weight * criterion(x + r_adv)`` (adversarial) or
    ``criterion(x) + weight * KL(p(x) || p(x + r_vadv))`` (virtual), with ``r`` added to the
    embedding's output."""

    def __init__(self, *args: Any, kind: str = "adversarial", epsilon: float = 5.0,
                 weight: float = 1.0, xi: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_options(kind=kind, epsilon=epsilon, weight=weight, xi=xi)
        if not isinstance(getattr(self.net, "embedding", None), nn.Embedding):
            raise ValueError(f"method=adversarial perturbs word embeddings: "
                             f"{type(self.net).__name__} has no `embedding` (use model=lstm, "
                             "gru or rnn on text data)")
        if self.multilabel:
            raise ValueError("method=adversarial is single-label; multi-label data trains "
                             "with method=supervised")
        self.kind, self.epsilon, self.weight, self.xi = kind, epsilon, weight, xi

    @classmethod
    def check_options(cls, *, kind: str, epsilon: float, weight: float, xi: float,
                      **options: Any) -> None:
        super().check_options(**options)
        if kind not in KINDS:
            raise ValueError(f"method.task.kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if epsilon <= 0 or weight < 0 or xi <= 0:
            raise ValueError("method.task.epsilon and xi must be > 0 and weight >= 0, got "
                             f"epsilon={epsilon}, weight={weight}, xi={xi}")

    @contextmanager
    def _embedding(self, shift: torch.Tensor | None = None) -> Iterator[list[torch.Tensor]]:
        """Within it, forward passes add ``shift`` to the embedding's output (None: they keep
        that output in the yielded list, to take gradients at it). A hook for the step only:
        the network itself stays plain (evaluation, export and copies never see it)."""
        kept: list[torch.Tensor] = []

        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            if shift is not None:
                return output + shift.to(output.dtype)
            if not output.requires_grad:  # a frozen embedding: its output is a leaf
                output.requires_grad_(True)
            kept.append(output)
            return output

        handle = self.net.embedding.register_forward_hook(hook)
        try:
            yield kept
        finally:
            handle.remove()

    def _radius(self) -> torch.Tensor:
        weight = self.net.embedding.weight.detach().float()
        return self.epsilon * weight.pow(2).mean().sqrt()

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[-1]
        with self._embedding() as kept:
            logits = self(x)
        clean = self.criterion(logits, y)
        if self.kind == "adversarial":
            extra, carrier = self._adversarial(x, y, clean, kept[0])
        else:
            extra, carrier = self._virtual(x, logits, kept[0]), clean - clean.detach()
        # value: the clean loss + weight x the extra one; gradient: both losses' (carrier's
        # value is zero, its gradient the clean loss's)
        loss = clean.detach() + self.weight * extra + carrier
        penalty = None
        if self.penalty is not None:
            penalty = self.penalty(self.net)
            loss = loss + penalty
        self.train_stats.update(logits.detach(), y, loss, penalty)
        self.log_step(loss, **{f"train/{self.kind}_loss_step": extra.detach()})
        return loss

    def _adversarial(self, x: Any, y: torch.Tensor, clean: torch.Tensor,
                     embedded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss at the adversarial shift, and a zero-valued carrier of the clean loss's
        gradient: one backward pass of the clean graph gives both the weights' gradients and
        the shift's direction (instead of one pass for the direction, another for the
        weights)."""
        params = [p for p in self.parameters() if p.requires_grad]
        grads = torch.autograd.grad(clean, [embedded, *params], allow_unused=True)
        with self._embedding(self._radius() * _unit(grads[0])):
            adversarial = self.criterion(self(x), y)
        carrier = sum(((p * g).sum() for p, g in zip(params, grads[1:], strict=True)
                       if g is not None), clean.new_zeros(()))
        return adversarial, carrier - carrier.detach()

    def _virtual(self, x: Any, logits: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        """KL between the clean prediction (held constant) and the prediction at the shift
        that one power-iteration step finds most sensitive (Miyato et al.'s VAT, K=1)."""
        clean = logits.detach().float().log_softmax(-1)
        probe = (self.xi * _unit(torch.randn_like(embedded, dtype=torch.float))
                 ).requires_grad_(True)
        with self._embedding(probe):
            kl = _kl(clean, self(x))
        direction = torch.autograd.grad(kl, probe)[0]
        with self._embedding(self._radius() * _unit(direction)):
            return _kl(clean, self(x))


def _unit(g: torch.Tensor) -> torch.Tensor:
    """``g`` scaled to unit L2 norm per sequence (over all its steps and coordinates)."""
    g = g.detach().float()
    # over its largest entry first, so the squares in the norm cannot underflow (an all-zero
    # gradient stays zero)
    g = g / g.abs().amax(dim=(1, 2), keepdim=True).clamp(min=torch.finfo(g.dtype).tiny)
    return g / g.pow(2).sum(dim=(1, 2), keepdim=True).sqrt().clamp(min=1.0)


def _kl(log_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    return F.kl_div(logits_q.float().log_softmax(-1), log_p, log_target=True,
                    reduction="batchmean")
