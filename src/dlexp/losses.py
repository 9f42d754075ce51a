"""The ``loss`` group: cross-entropy (with label smoothing and class weights), the course's
MSE on softmax outputs against one-hot targets, or, for multi-label data, binary
cross-entropy on each output (:class:`BinaryCrossEntropy`, ``loss=bce``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def class_weights(spec: str | Sequence[float] | None, counts: torch.Tensor | None
                  ) -> torch.Tensor | None:
    """``balanced`` weights classes by n / (C * count_c), as scikit-learn does; a list is used
    as given; ``None`` means unweighted."""
    def balanced() -> torch.Tensor:
        if counts is None:
            raise ValueError("loss.class_weights=balanced needs the class counts of the data")
        c = counts.float().clamp(min=1)
        return c.sum() / (len(c) * c)
    return _weights("class_weights", spec, balanced)


def positive_weights(spec: str | Sequence[float] | None, targets: torch.Tensor | None
                     ) -> torch.Tensor | None:
    """BCE's ``pos_weight`` per label: ``balanced`` is negatives / positives of the training
    targets (N, C) (PyTorch's suggestion), a list is used as given, ``None`` is unweighted."""
    def balanced() -> torch.Tensor | None:
        if targets is None:
            raise ValueError("loss.pos_weight=balanced needs the training targets")
        if not len(targets):  # a checkpoint evaluated on new data: no training split here
            return None
        positives = targets.float().sum(0)
        return (len(targets) - positives) / positives.clamp(min=1)
    return _weights("pos_weight", spec, balanced)


def _weights(key: str, spec: str | Sequence[float] | None,
             balanced: Callable[[], torch.Tensor | None]) -> torch.Tensor | None:
    """``loss.<key>``: null (unweighted), ``balanced`` (computed from the data) or a list."""
    if spec is None:
        return None
    if spec == "balanced":
        return balanced()
    if isinstance(spec, str):
        raise ValueError(f"loss.{key} must be 'balanced', a list or null, got {spec!r}")
    return torch.tensor(list(spec), dtype=torch.float)


WEIGHT_MEANS = ("weights", "samples")


class ClassificationLoss(nn.Module):
    """Base: label smoothing and the optional class-weight buffer (a buffer, so it follows
    the module across devices). With class weights, ``weight_mean`` says what the weighted
    losses are divided by: ``weights``, their sum (PyTorch's weighted mean), or ``samples``, the
    batch size (Keras' ``class_weight``: the loss, and so the step size, grows with the weights).
    """

    def __init__(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None,
                 weight_mean: str = "weights") -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        if weight_mean not in WEIGHT_MEANS:
            raise ValueError(f"loss.weight_mean must be one of {', '.join(WEIGHT_MEANS)}, "
                             f"got {weight_mean!r}")
        self.label_smoothing, self.weight_mean = label_smoothing, weight_mean
        self.register_buffer("weight", weight, persistent=False)

    def set_class_weights(self, weight: torch.Tensor | None) -> None:
        self.weight = weight


class CrossEntropy(ClassificationLoss):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        by_samples = self.weight is not None and self.weight_mean == "samples"
        loss = F.cross_entropy(logits.float(), target, weight=self.weight,
                               label_smoothing=self.label_smoothing,
                               reduction="none" if by_samples else "mean")
        return loss.mean() if by_samples else loss


class SoftmaxMSE(ClassificationLoss):
    """Keras' ``loss='mse'`` after a softmax layer: mean over classes of (p - onehot)^2."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = logits.shape[-1]
        onehot = F.one_hot(target, k).float()
        if self.label_smoothing:
            onehot = onehot * (1 - self.label_smoothing) + self.label_smoothing / k
        per_sample = (logits.float().softmax(-1) - onehot).pow(2).mean(-1)
        if self.weight is None:
            return per_sample.mean()
        w = self.weight[target]
        return (per_sample * w).sum() / (len(w) if self.weight_mean == "samples" else w.sum())


class BinaryCrossEntropy(nn.Module):
    """Multi-label: a sigmoid per output against multi-hot float targets (N, C), averaged
    over outputs and samples (``BCEWithLogitsLoss``); ``pos_weight`` (a buffer, per label)
    weighs the positives of rare labels up."""

    multilabel = True  # what builders check against the data

    def __init__(self, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(),
                                                  pos_weight=self.pos_weight)
